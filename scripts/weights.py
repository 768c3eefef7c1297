"""Fill one model's folder of the pretrained-weights cache, with its manifest (the
`model_weights` rule, one job per model of config `models:`).

With --source hub this downloads the model's published files, so it runs where the network
is (the login node); --source files reads the same files from a local folder (the offline
weights bundle, or stand-ins); --source random writes tiny seeded random weights in the same
layout (demo, tests).
"""

from __future__ import annotations

import sys

from overlearning.models.weights import prepare_model_weights
from overlearning.workflow.cli import ScriptParser, report


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--key", required=True, help="the model's key in config models")
    parser.add_settings("--model", "config models.<KEY>")
    parser.add_argument("--cache", required=True, help="the weights cache folder")
    parser.add_argument("--source", required=True, choices=["hub", "files", "random"])
    parser.add_argument("--files", default=None,
                        help="weights bundle folder (the published files; source files)")
    parser.add_argument("--seed", type=int, required=True, help="seed of random weights")
    args = parser.parse(argv)
    manifest = prepare_model_weights(args.key, args.model, args.cache, args.source, args.seed,
                                     files_dir=args.files)
    report({"model": args.key, "files": len(manifest)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

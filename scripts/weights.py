"""Fill the pretrained-weights cache and write its manifest (the `weights` rule).

With --source hub this downloads the published pretrained files, so it runs where the
network is (the login node); --source files reads the same files from a local folder (the
offline weights bundle, or stand-ins); --source random writes tiny seeded random weights in
the same layout (demo, tests).
"""

from __future__ import annotations

import sys

from overlearning.models.weights import prepare_weight_cache
from overlearning.workflow.cli import ScriptParser, report


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_settings("--models", "config models.*")
    parser.add_argument("--cache", required=True, help="the weights cache folder")
    parser.add_argument("--source", required=True, choices=["hub", "files", "random"])
    parser.add_argument("--files", default=None,
                        help="weights bundle folder (the published files; source files)")
    parser.add_argument("--seed", type=int, required=True, help="seed of random weights")
    args = parser.parse(argv)
    files = prepare_weight_cache(args.models, args.cache, args.source, args.seed,
                                 files_dir=args.files)
    report({"files": len(files)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

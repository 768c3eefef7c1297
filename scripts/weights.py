"""Fill the pretrained-weights cache and write its manifest (the `weights` rule).

With --source hub this downloads the pretrained trunks and detector weights, so it runs
where the network is (the login node); with --source random it writes tiny seeded random
weights in the same layout (demo, tests).
"""

from __future__ import annotations

import sys

from overlearning.models.weights import prepare_weight_cache
from overlearning.workflow.cli import ScriptParser, report


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_settings("--models", "config models.*")
    parser.add_argument("--cache", required=True, help="the weights cache folder")
    parser.add_argument("--source", required=True, choices=["hub", "random"])
    parser.add_argument("--seed", type=int, required=True, help="seed of random weights")
    args = parser.parse(argv)
    files = prepare_weight_cache(args.models, args.cache, args.source, args.seed)
    report({"files": len(files)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Merge a set's detection shards into one file (the `gather_detections` rule).

Stops if the shards overlap or do not cover exactly the set's image list.
"""

from __future__ import annotations

import sys

from overlearning.detect.grounding import run_gather
from overlearning.workflow.cli import ScriptParser, report


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--shards", nargs="+", required=True, help="shard JSON files")
    parser.add_argument("--images-from", required=True,
                        help="instances.json (VIS frames) or the image pack")
    parser.add_argument("--person-label", required=True, help="for the summary only")
    parser.add_argument("--out", required=True, help="the set's detections JSON")
    args = parser.parse(argv)
    summary = run_gather(args.shards, args.images_from, args.out, args.person_label)
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

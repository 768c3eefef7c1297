"""Refuse to stand in for dataset downloads that are not there (the `missing_downloads` rule).

The rule only exists so that a plan can be looked at before the downloads are fetched; a
real run stops before any job (onstart). Started anyway, it fails here with one line that
names the first missing download and counts the others, and creates nothing.
"""

from __future__ import annotations

import sys

from overlearning.core.errors import WorkflowInputError
from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--missing", nargs=2, action="append", required=True,
                        metavar=("KEY", "PATH"), help="config key and path of a missing download")
    args = parser.parse(argv)
    (key, path), *others = args.missing
    also = f"; {len(others)} more: {', '.join(p for _, p in others)}" if others else ""
    raise WorkflowInputError(path, f"{key}: not downloaded (docs/hpc.md, step 3){also}")


if __name__ == "__main__":
    sys.exit(main())

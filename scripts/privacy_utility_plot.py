"""Person MAP@R against non-person MAP@R, one point per table row (the `privacy_utility` rule)."""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--nonperson", required=True, help="utility evaluation (x axis)")
    parser.add_argument("--person", nargs="+", required=True, help="person evaluations (panels)")
    parser.add_argument("--out", required=True)
    args = parser.parse(argv)

    from overlearning.evaluate.figures import privacy_utility_plot
    from overlearning.evaluate.tables import load_records

    privacy_utility_plot(load_records(args.metrics, progress=True), args.out, args.nonperson, args.person)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ROC curves of same/different-identity pair similarities per person set (the `roc_curves` rule)."""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--metrics", nargs="+", required=True)
    parser.add_argument("--evaluations", nargs="+", required=True, help="one panel each")
    parser.add_argument("--out", required=True)
    args = parser.parse(argv)

    from overlearning.evaluate.figures import roc_figure
    from overlearning.evaluate.tables import load_records

    roc_figure(load_records(args.metrics, progress=True), args.out, args.evaluations)
    return 0


if __name__ == "__main__":
    sys.exit(main())

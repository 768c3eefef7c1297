"""Best and worst queries with their nearest indexed neighbours (the `query_grid` rule).

--query is ``NPZ SUBSET IMAGE_ROOT``; each --reference is ``NPZ SUBSET EXCLUSION IMAGE_ROOT``
(EXCLUSION - for none). Green border: same label as the query; red: another label.
"""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--query", nargs=3, metavar=("NPZ", "SUBSET", "ROOT"), required=True)
    parser.add_argument("--reference", nargs=4, metavar=("NPZ", "SUBSET", "EXCLUSION", "ROOT"),
                        action="append", required=True)
    parser.add_argument("--queries", type=int, required=True, help="rows per block (best, worst)")
    parser.add_argument("--neighbours", type=int, required=True)
    parser.add_argument("--title", help="figure title (default: from the three below, in words)")
    parser.add_argument("--setting", default="", help="training setting key")
    parser.add_argument("--evaluation", default="", help="evaluation key")
    parser.add_argument("--exclusion", default="", help="test-time safeguard key")
    parser.add_argument("--out", required=True)
    args = parser.parse(argv)

    from overlearning.core.names import evaluation_title, safeguard_title, setting_title
    from overlearning.evaluate.figures import query_grid
    from overlearning.evaluate.retrieval_inputs import load_retrieval_inputs, part_from_cli

    query = part_from_cli(args.query[0], args.query[1])
    references = [part_from_cli(*spec[:3]) for spec in args.reference]
    inputs = load_retrieval_inputs(query, references)
    title = args.title or (f"{evaluation_title(args.evaluation)} | "
                           f"{setting_title(args.setting)} | {safeguard_title(args.exclusion)}")
    query_grid(inputs, args.query[2], [spec[3] for spec in args.reference], args.out,
               args.queries, args.neighbours, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Best and worst queries with their nearest indexed neighbours (the `query_grid` rule),
drawn from the per-query evidence the metrics job stored (no search runs here).

--evidence is the metrics file's ``.queries.csv.gz``; --query-root the query images;
each --reference is ``SET ROOT`` (an embedding set named in the evidence and its images).
Green border: same label as the query; red: another label.
"""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--evidence", required=True, help="per-query evidence (.queries.csv.gz)")
    parser.add_argument("--query-root", required=True)
    parser.add_argument("--reference", nargs=2, metavar=("SET", "ROOT"), action="append",
                        required=True)
    parser.add_argument("--attacker", default="plain", help="whose ranking to draw")
    parser.add_argument("--queries", type=int, required=True, help="rows per block (best, worst)")
    parser.add_argument("--neighbours", type=int, required=True)
    parser.add_argument("--title", help="figure title (default: from the three below, in words)")
    parser.add_argument("--setting", default="", help="training setting key")
    parser.add_argument("--evaluation", default="", help="evaluation key")
    parser.add_argument("--exclusion", default="", help="test-time safeguard key")
    parser.add_argument("--out", required=True)
    args = parser.parse(argv)

    from overlearning.core.names import evaluation_title, safeguard_title, setting_title
    from overlearning.evaluate.figures import query_grid, read_attacker_evidence

    evidence = read_attacker_evidence(args.evidence, args.attacker)
    title = args.title or (f"{evaluation_title(args.evaluation)} | "
                           f"{setting_title(args.setting)} | {safeguard_title(args.exclusion)}")
    query_grid(evidence, args.query_root, dict(args.reference), args.out, args.queries,
               args.neighbours, title, source=args.evidence)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the safeguards miss (the `leaks` rule): per attacker, the queries that still find
their person at rank 1 and at ranks 2-5, drawn as ranked strips with their scores, from the
per-query evidence the metrics job stored (no search runs here).

--evidence is the metrics file's ``.queries.csv.gz``; --query-root the query images; each
--reference is ``SET ROOT`` (an embedding set named in the evidence and its images).
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
    parser.add_argument("--queries", type=int, required=True, help="queries per block")
    parser.add_argument("--setting", default="", help="training setting key")
    parser.add_argument("--evaluation", default="", help="evaluation key")
    parser.add_argument("--exclusion", default="", help="test-time safeguard key")
    parser.add_argument("--out", required=True)
    args = parser.parse(argv)

    from overlearning.core.names import evaluation_title, safeguard_title, setting_title
    from overlearning.evaluate.figures import leak_strips, read_attacker_evidence

    evidence = read_attacker_evidence(args.evidence)
    title = (f"Leaks: {evaluation_title(args.evaluation)} | {setting_title(args.setting)} | "
             f"{safeguard_title(args.exclusion)}")
    leak_strips(evidence, args.query_root, dict(args.reference), args.out, args.queries, title,
                source=args.evidence)
    return 0


if __name__ == "__main__":
    sys.exit(main())

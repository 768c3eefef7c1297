"""The study's tables from the metrics files (the `tables` rule).

Rows (setting, exclusion) and columns (evaluations) follow the order of --metrics. Writes
main/reid tables as CSV, Markdown and LaTeX, details.csv, headline.json/.md, and a
provenance file beside each table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--metrics", nargs="+", required=True, help="metrics JSON files")
    parser.add_argument("--baseline", required=True, help="setting without safeguards")
    parser.add_argument("--safeguarded", required=True, help="setting trained with a safeguard loss")
    parser.add_argument("--nonperson", required=True, help="evaluation measuring utility")
    parser.add_argument("--person", required=True, help="evaluation measuring person re-ID")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--row-label", default="index exclusion",
                        help="what the second part of a row label is, for the caption")
    args = parser.parse(argv)

    from overlearning.evaluate.tables import write_tables
    from overlearning.workflow.provenance import write_provenance

    written = write_tables(args.metrics, Path(args.out_dir), args.baseline, args.safeguarded,
                           args.nonperson, args.person, row_label=args.row_label)
    # One provenance file per table (main.csv, main.md and main.tex share main.provenance.json);
    # the config hash comes from the workflow's environment (provenance.CONFIG_HASH_ENV).
    for stem in dict.fromkeys(path.with_suffix("") for path in written):
        write_provenance(stem.with_suffix(".json"), extra={"metrics_files": len(args.metrics)})
    print((Path(args.out_dir) / "headline.md").read_text(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

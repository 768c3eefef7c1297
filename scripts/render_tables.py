"""HTML views of CSV and JSON tables for the Snakemake report (the `*_html` rules).

  --fractions CSV HTML TITLE   a table of fractions (MAP@R, Rank-1, ...), shown as percentages
  --csv CSV HTML TITLE         any other table (training history, tuning trials), as written
  --json JSON HTML TITLE       one JSON record, one row per (nested) key
  --record NAME JSON           rows of one combined table (repeat), written by --records-out
"""

from __future__ import annotations

import argparse
import sys

NOTE = ("Cells are shaded by value within their column (darker = higher); hover a cell for "
        "its exact value. The CSV/JSON file beside this page is the exact record.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", nargs=3, action="append", default=[],
                        metavar=("CSV", "HTML", "TITLE"))
    parser.add_argument("--csv", nargs=3, action="append", default=[],
                        metavar=("CSV", "HTML", "TITLE"))
    parser.add_argument("--json", nargs=3, action="append", default=[],
                        metavar=("JSON", "HTML", "TITLE"))
    parser.add_argument("--record", nargs=2, action="append", default=[],
                        metavar=("NAME", "JSON"))
    parser.add_argument("--records-out", nargs=2, metavar=("HTML", "TITLE"))
    args = parser.parse_args(argv)
    if bool(args.record) != bool(args.records_out):
        parser.error("--record and --records-out go together")

    from tqdm import tqdm

    from overlearning.core.atomic import read_json
    from overlearning.core.errors import WorkflowInputError
    from overlearning.evaluate.html_tables import render_csv, render_json, render_records

    jobs = [(out, lambda s=src, o=out, t=title: render_csv(
                s, o, t, NOTE + " Numbers are percentages.", percent=True))
            for src, out, title in args.fractions]
    jobs += [(out, lambda s=src, o=out, t=title: render_csv(s, o, t, NOTE))
             for src, out, title in args.csv]
    jobs += [(out, lambda s=src, o=out, t=title: render_json(s, o, t, "Every entry of the JSON file."))
             for src, out, title in args.json]
    if args.record:
        jobs.append((args.records_out[0], lambda: render_records(
            [(name, read_json(path)) for name, path in args.record], args.records_out[0],
            args.records_out[1], NOTE)))
    try:
        for out, render in tqdm(jobs, desc="tables", unit="table", file=sys.stderr):
            render()
            print(f"wrote {out}", file=sys.stderr)
    except WorkflowInputError as error:
        print(f"render_tables: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

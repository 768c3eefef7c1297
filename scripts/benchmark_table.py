"""Per-rule peak memory and time from a run's Snakemake benchmark files, as a Markdown table.

Every rule writes ``<logs>/benchmarks/<rule>/<wildcards>.tsv`` (Snakemake's ``benchmark:``
directive: wall seconds ``s``, peak resident memory ``max_rss`` in MB, ...). This reads them
all and writes one row per rule: jobs, peak max_rss, longest and total wall time, and the
memory request it suggests (peak x 1.5 + 1 GB, rounded up to whole GB). With ``--doc`` the
table replaces the block between the markers below in that file (docs/hpc.md, filled from
`make rehearse`); without it, the table goes to stdout.

With ``--scale-growth`` (bench-results/scale-growth.json of `make scale`), a rule whose
peak at the published data counts is at least its peak here is bounded by the data, not
by the model: its row, measured on tiny data, is left out and named under the table (the
scale rehearsal's table in the same document has it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from overlearning.core.atomic import write_text
from overlearning.core.errors import WorkflowInputError

START = "<!-- rehearsal-memory:start -->"
END = "<!-- rehearsal-memory:end -->"


def read_benchmark_rows(root: Path) -> dict[Path, list[dict[str, float]]]:
    """{benchmark file: [one dict per row: s, max_rss, cpu_time]} for every ``root/**/*.tsv``
    (``cpu_time``: CPU seconds of the job's processes, 0 where not measured)."""
    if not root.is_dir():
        raise WorkflowInputError(root, "benchmark folder not found (run the workflow first)")
    files: dict[Path, list[dict[str, float]]] = {}
    for path in sorted(root.rglob("*.tsv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            raise WorkflowInputError(path, "benchmark file has no row")
        try:
            files[path] = [{"s": float(row["s"]), "max_rss": _number(row["max_rss"]),
                            "cpu_time": _number(row.get("cpu_time") or "")} for row in rows]
        except (KeyError, ValueError) as exc:
            raise WorkflowInputError(path, f"not a Snakemake benchmark file ({exc})") from None
    if not files:
        raise WorkflowInputError(root, "no benchmark files below this folder")
    return files


def read_benchmarks(root: Path) -> dict[str, list[dict[str, float]]]:
    """{rule: [one dict per job: s, max_rss]} from ``root/<rule>/**/*.tsv``."""
    rules: dict[str, list[dict[str, float]]] = {}
    for path, rows in read_benchmark_rows(root).items():
        rules.setdefault(path.relative_to(root).parts[0], []).extend(rows)
    return rules


def _number(text: str) -> float:
    # Snakemake writes "-" where it could not measure (a job too short to sample).
    return 0.0 if text.strip() in ("", "-", "NA") else float(text)


def suggested_mem_mb(peak_mb: float) -> int:
    """Peak x 1.5 + 1000 MB, rounded up to a whole 1000 MB: headroom for real data sizes."""
    return int(math.ceil((peak_mb * 1.5 + 1000) / 1000.0) * 1000)


def data_bound(rules: dict[str, list[dict[str, float]]], growth: Path) -> set[str]:
    """Rules whose peak in the scale rehearsal (at the published counts, or at the largest
    fraction measured) reaches their peak here."""
    try:
        scale = json.loads(growth.read_text())["rules"]
    except (OSError, ValueError, KeyError) as exc:
        raise WorkflowInputError(growth, f"not a scale-growth.json of make scale ({exc})") from None
    def scale_peak(rule: str) -> float:
        entry = scale.get(rule, {})
        return max(entry.get("peak_mb_at_published", -1.0), entry.get("peak_mb_measured", -1.0))

    return {rule for rule, jobs in rules.items() if scale_peak(rule) >= max(j["max_rss"] for j in jobs)}


def table(rules: dict[str, list[dict[str, float]]], left_out: set[str] = frozenset()) -> str:
    lines = ["| rule | jobs | peak max_rss (MB) | longest job (s) | all jobs (s) | suggested mem_mb |",
             "|---|---:|---:|---:|---:|---:|"]
    for rule in sorted(rules, key=lambda r: (-max(j["max_rss"] for j in rules[r]), r)):
        if rule in left_out:
            continue
        jobs = rules[rule]
        peak = max(j["max_rss"] for j in jobs)
        lines.append(f"| {rule} | {len(jobs)} | {peak:.0f} | {max(j['s'] for j in jobs):.0f} | "
                     f"{sum(j['s'] for j in jobs):.0f} | {suggested_mem_mb(peak)} |")
    if left_out:
        lines += ["", "Bounded by the data (see the scale rehearsal's table): "
                  + ", ".join(sorted(left_out)) + "."]
    return "\n".join(lines) + "\n"


def replace_block(doc: Path, body: str) -> None:
    text = doc.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise WorkflowInputError(doc, f"needs exactly one {START} ... {END} block")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    write_text(doc, f"{head}{START}\n{body}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--benchmarks", required=True, type=Path,
                        help="the run's logs/benchmarks folder")
    parser.add_argument("--doc", type=Path, default=None,
                        help="Markdown file whose marked block gets the table")
    parser.add_argument("--scale-growth", type=Path, default=None,
                        help="scale-growth.json of make scale: leave out data-bound rules")
    args = parser.parse_args(argv)
    rules = read_benchmarks(args.benchmarks)
    left_out = data_bound(rules, args.scale_growth) if args.scale_growth else set()
    body = table(rules, left_out)
    if args.doc is None:
        sys.stdout.write(body)
    else:
        replace_block(args.doc, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

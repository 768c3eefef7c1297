"""The scale rehearsal's measurements: one JSON per fraction, the growth across fractions, and
the tables of docs/hpc.md ("Scale rehearsal").

``collect`` reads one finished run folder of `make scale` (scale-run/<fraction>/):

- per job, wall time and peak resident memory from its Snakemake benchmark file
  (``logs/benchmarks/<rule>/<wildcards>.tsv``: ``s``, ``max_rss`` in MB, of the job's whole
  process tree);
- per job, the files it opened, from the strace count bench/scale_shim wrote beside it
  (``opens/logs/<rule>/<wildcards>.json``, bench/open_counter.py): every open, and the
  reads, writes and folder listings inside the run folder;
- per rule, the files and bytes its outputs hold (``summary.tsv``, Snakemake's
  ``--summary``: one line per declared output; a folder output counts every file below it),
  and its log and benchmark files;
- the files and bytes below data/, results/, resources/ and logs/ in all.

It writes ``<out>/scale-<fraction>.json`` (bench/results.py). ``doc`` reads every
``scale-*.json`` there, fits each rule's growth with the data volume (the slope of
log(value) against log(fraction), least squares: 1 = linear, 0 = constant) for CPU
time (wall time on a shared machine measures the neighbours), memory, files written and
files read (only over the runs of the largest fraction's workflow code, WORKFLOW_PATHS),
extrapolates time and memory to the published counts along the slope between the two
largest fractions (time at least linearly), writes ``<out>/scale-growth.json``, and replaces
the marked tables of docs/hpc.md. With a run at the published counts it also fits the smaller
fractions alone and sets their prediction beside that run's measurement (``held_out``). The
Makefile runs neither as a benchmark (``make bench`` runs bench/bench_*.py only).

    python bench/scale.py collect --run scale-run/1-16 --fraction 1/16 --out bench-results
    python bench/scale.py doc --results bench-results --doc docs/hpc.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from results import write_result  # noqa: E402

from overlearning.core.atomic import write_text  # noqa: E402
from overlearning.core.errors import WorkflowInputError  # noqa: E402
from overlearning.demo.scale import parse_fraction  # noqa: E402
from scripts.benchmark_table import read_benchmark_rows, suggested_mem_mb  # noqa: E402

TREES = ("data", "results", "resources", "logs")
OPEN_KEYS = ("opens", "run_reads", "run_writes", "run_folders", "run_files_read")
MARKERS = {name: (f"<!-- scale-{name}:start -->", f"<!-- scale-{name}:end -->")
           for name in ("rules", "growth", "files", "check")}
GROWTH_MEASURES = {"time": "cpu_s", "memory": "peak_max_rss_mb",
                   "files": "files_written", "opens": "run_reads"}
MIN_SAMPLED_S = 1.0
# The held-out check lists the rules whose longest job took at least this many CPU seconds
# at the published counts: below it, a ratio compares start-up costs, not growth.
MIN_CHECKED_CPU_S = 10.0
# What a job computes: two runs are fitted together only where none of these differ (a fit
# across a change of the evaluation, say, would read the change as growth with the data).
WORKFLOW_PATHS = ("Snakefile", "rules", "overlearning", "scripts", "schemas", "envs",
                  "config.yaml", "config.demo.yaml", "config.scale.yaml")


def fraction_tag(fraction: Fraction) -> str:
    """``1/16`` -> ``1-16`` (file and folder names)."""
    return str(fraction).replace("/", "-")


def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes) of a file, or of every file below a folder."""
    if path.is_file():
        return 1, path.stat().st_size
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(folder, name)).st_size
    return files, size


def read_summary(path: Path) -> list[tuple[str, str]]:
    """(output path, rule) of every line of ``snakemake --summary``."""
    if not path.is_file():
        raise WorkflowInputError(path, "no summary (make scale writes it with --summary)")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "output_file" not in rows[0] or "rule" not in rows[0]:
        raise WorkflowInputError(path, "not a Snakemake --summary table")
    return [(row["output_file"], row["rule"]) for row in rows if row["rule"] not in ("-", "")]


def read_opens(path: Path) -> dict[str, int]:
    if not path.is_file():
        raise WorkflowInputError(path, "no open count for this job (was it run through "
                                       "bench/scale_shim, i.e. by make scale?)")
    counts = json.loads(path.read_text())
    return {key: int(counts[key]) for key in OPEN_KEYS}


def collect(run: Path, fraction: Fraction) -> dict[str, Any]:
    """The measurements of one finished scale run, per job and per rule."""
    benchmarks = run / "logs" / "benchmarks"
    jobs = []
    for path, rows in read_benchmark_rows(benchmarks).items():
        rel = path.relative_to(benchmarks).with_suffix("")
        job = {"rule": rel.parts[0], "job": str(rel), "s": max(r["s"] for r in rows),
               "cpu_s": max(r["cpu_time"] for r in rows),
               "max_rss_mb": max(r["max_rss"] for r in rows)}
        job.update(read_opens(run / "opens" / "logs" / rel.with_suffix(".json")))
        jobs.append(job)
    rules: dict[str, dict[str, Any]] = {}
    for job in jobs:
        rule = rules.setdefault(job["rule"], {
            "jobs": 0, "all_jobs_s": 0.0, "longest_job_s": 0.0, "cpu_s": 0.0,
            "longest_job_cpu_s": 0.0,
            "peak_max_rss_mb": 0.0,
            "files_written": 0, "bytes_written": 0, "log_files": 0,
            **{key: 0 for key in OPEN_KEYS}})
        rule["jobs"] += 1
        rule["all_jobs_s"] += job["s"]
        rule["cpu_s"] += job["cpu_s"]
        rule["longest_job_cpu_s"] = max(rule["longest_job_cpu_s"], job["cpu_s"])
        rule["longest_job_s"] = max(rule["longest_job_s"], job["s"])
        rule["peak_max_rss_mb"] = max(rule["peak_max_rss_mb"], job["max_rss_mb"])
        for key in OPEN_KEYS:
            rule[key] += job[key]
    for output, rule_name in read_summary(run / "summary.tsv"):
        if rule_name in rules and (run / output).exists():
            files, size = tree_size(run / output)
            rules[rule_name]["files_written"] += files
            rules[rule_name]["bytes_written"] += size
    for rule_name, rule in rules.items():
        for folder in (run / "logs" / rule_name, benchmarks / rule_name):
            rule["log_files"] += tree_size(folder)[0] if folder.exists() else 0
    trees = {name: dict(zip(("files", "bytes"), tree_size(run / name), strict=True))
             for name in TREES if (run / name).exists()}
    # One line per session of the run (make scale appends; SCALE_KEEP=1 continues an
    # interrupted run): the wall time is the sum of the sessions, unknown while one of
    # them has no end.
    starts, ends = ([int(t) for t in (run / name).read_text().split()]
                    if (run / name).is_file() else [] for name in ("start", "end"))
    complete = bool(starts) and len(starts) == len(ends)
    return {
        "fraction": str(fraction),
        "fraction_value": float(fraction),
        "run_wall_s": sum(e - s for s, e in zip(starts, ends, strict=True)) if complete else None,
        "run_sessions": len(starts),
        "job_s": round(sum(j["s"] for j in jobs), 1),
        "cpu_s": round(sum(j["cpu_s"] for j in jobs), 1),
        "jobs": sorted(jobs, key=lambda j: j["job"]),
        "rules": dict(sorted(rules.items())),
        "trees": trees,
        "files_total": sum(t["files"] for t in trees.values()),
        "bytes_total": sum(t["bytes"] for t in trees.values()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "commit": _commit(),
    }


def _commit(repo: Path = REPO) -> str | None:
    """The checkout's commit (``git describe``), ``-dirty`` where the workflow code
    (WORKFLOW_PATHS) has uncommitted or untracked changes. Other files do not count: each
    ``make scale`` rewrites docs/hpc.md and bench-results/, which change no job, so a
    second fraction run in the same clone ran the commit's workflow all the same."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        described = git("describe", "--always")
        changed = git("status", "--porcelain", "--", *WORKFLOW_PATHS)
    except (OSError, subprocess.CalledProcessError):
        return None
    return described + ("-dirty" if changed else "")


# ---- growth and documents -----------------------------------------------------------------


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x) over the points with y > 0."""
    logs = [(math.log(x), math.log(y)) for x, y in points if y > 0 and x > 0]
    if len(logs) < 2:
        return None
    mx = sum(x for x, _ in logs) / len(logs)
    my = sum(y for _, y in logs) / len(logs)
    sxx = sum((x - mx) ** 2 for x, _ in logs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in logs) / sxx


def load_results(folder: Path) -> list[dict[str, Any]]:
    results = []
    for path in sorted(folder.glob("scale-*.json")):
        if path.name == "scale-growth.json":
            continue
        data = json.loads(path.read_text())
        if "fraction_value" not in data:
            raise WorkflowInputError(path, "not a scale rehearsal result (no fraction_value)")
        results.append(data)
    if not results:
        raise WorkflowInputError(folder, "no scale-<fraction>.json here (run make scale)")
    return sorted(results, key=lambda r: r["fraction_value"])


def same_workflow(a: str | None, b: str | None, repo: Path = REPO) -> bool:
    """Whether two runs' commits (``git describe --dirty``) ran the same workflow code: the
    same clean commit, or clean commits whose WORKFLOW_PATHS do not differ. A dirty run
    matches nothing but itself (its changes were not recorded)."""
    if a is None or b is None or a.endswith("-dirty") or b.endswith("-dirty"):
        return False
    if a == b:
        return True
    diff = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", a, b, "--",
                           *WORKFLOW_PATHS], capture_output=True)
    return diff.returncode == 0


def growth(results: list[dict[str, Any]], repo: Path = REPO) -> dict[str, Any]:
    """Per rule: the exponent of each measure with the fraction (over all fractions, and
    between the two largest), and the peak memory and longest job's CPU time at the
    published counts (measured there, or extrapolated from the largest fraction along the
    slope between the two largest). Only the runs of the largest fraction's workflow code
    are fitted."""
    largest = results[-1]
    fitted: list[dict[str, Any]] = []
    unfitted: list[dict[str, Any]] = []
    for res in results:
        same = res is largest or same_workflow(res.get("commit"), largest.get("commit"), repo)
        (fitted if same else unfitted).append(res)
    results = fitted
    rules: dict[str, Any] = {}
    for rule in sorted({r for res in results for r in res["rules"]}):
        runs = [(res["fraction_value"], res["rules"][rule]) for res in results
                if rule in res["rules"]]
        entry: dict[str, Any] = {"fractions": [f for f, _ in runs]}
        for name, key in GROWTH_MEASURES.items():
            # Snakemake samples a job's memory every 0.5 s (every 30 s after its first 15 s):
            # a job that ends within a second reports little more than its shell's.
            sampled = [(f, r) for f, r in runs
                       if name != "memory" or r["longest_job_s"] >= MIN_SAMPLED_S]
            # "_largest": the slope nearest the published counts. A job's fixed costs
            # (interpreter, imports, loading a model) weigh most at the smallest fractions and
            # flatten the slope over all of them (metrics: 1.33 over 1/64 to 1/4, 2.36 from
            # 1/16 to 1/4, 2.1 profiled on one evaluation up to 88k items).
            for suffix, points in (("", sampled), ("_largest", sampled[-2:])):
                value = slope([(f, float(r[key])) for f, r in points])
                entry[f"{name}_exponent{suffix}"] = None if value is None else round(value, 2)
        if rule in largest["rules"]:
            peak = largest["rules"][rule]["peak_max_rss_mb"]
            f = largest["fraction_value"]
            entry["peak_mb_measured"] = round(peak)
            # Memory is extrapolated only along a measured slope: most of a small job's peak
            # is the interpreter and its libraries, which do not grow with the data.
            if f == 1.0 or entry["memory_exponent_largest"] is not None:
                exponent = max(0.0, entry["memory_exponent_largest"] or 0.0)
                entry["peak_mb_at_published"] = round(peak * (1 / f) ** exponent)
                entry["peak_at_published_measured"] = f == 1.0
            entry["suggested_mem_mb"] = suggested_mem_mb(entry.get("peak_mb_at_published", peak))
            # At least linearly, as fixed costs flatten even the slope nearest the published
            # counts (embed's longest job: slope 0.79 from 1/16 to 1/4, 1.35 from 1/4 to 1).
            # A job whose work does not grow is overestimated by seconds.
            grows = max(1.0, entry["time_exponent_largest"] or 1.0)
            entry["longest_job_cpu_s_at_published"] = round(
                largest["rules"][rule]["longest_job_cpu_s"] * (1 / f) ** grows)
        rules[rule] = entry
    grown = {"fractions": [r["fraction"] for r in results],
             "not_fitted": [f"{r['fraction']} ({r.get('commit')})" for r in unfitted],
             "rules": rules,
             "files_total": {r["fraction"]: r["files_total"] for r in results},
             "bytes_total": {r["fraction"]: r["bytes_total"] for r in results},
             "run_wall_s": {r["fraction"]: r["run_wall_s"] for r in results}}
    if largest["fraction_value"] == 1.0 and len(results) >= 3:
        grown["held_out"] = held_out(results, repo)
    return grown


def held_out(results: list[dict[str, Any]], repo: Path = REPO) -> dict[str, Any]:
    """What the smaller fractions predicted for the published counts, against what the run at
    the published counts measured: the growth fitted without that run (as a first cluster
    run would have sized its requests), per rule measured / predicted."""
    measured = results[-1]["rules"]
    predicted = growth(results[:-1], repo)
    rules: dict[str, Any] = {}
    for rule, guess in predicted["rules"].items():
        if rule not in measured or "longest_job_cpu_s_at_published" not in guess:
            continue
        cpu, peak = measured[rule]["longest_job_cpu_s"], measured[rule]["peak_max_rss_mb"]
        cpu_guess = guess["longest_job_cpu_s_at_published"]
        peak_guess = guess.get("peak_mb_at_published")
        rules[rule] = {"longest_job_cpu_s": round(cpu, 1),
                       "longest_job_cpu_s_predicted": cpu_guess,
                       "cpu_ratio": _ratio(cpu, cpu_guess), "peak_mb": round(peak),
                       "peak_mb_predicted": peak_guess, "peak_ratio": _ratio(peak, peak_guess)}
    return {"fractions": predicted["fractions"], "rules": rules}


def _ratio(measured: float, predicted: float | None) -> float | None:
    return round(measured / predicted, 2) if predicted else None


def _fractions(values: list[Any]) -> str:
    """``[0.25, "1"]`` -> ``1/4, 1`` (floats, or the fraction strings a result records)."""
    return ", ".join(str(Fraction(f).limit_denominator(1024)) for f in values)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def _exp(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def rules_table(result: dict[str, Any], grown: dict[str, Any]) -> str:
    lines = [f"Fraction {result['fraction']} of the published counts "
             f"({result['files_total']} files, {_mb(result['bytes_total'])} MB below data/, "
             f"results/, resources/ and logs/; {result['job_s']:.0f} s of job time, "
             f"{result['cpu_s']:.0f} CPU s"
             + (f", {result['run_wall_s']} s wall" if result["run_wall_s"] else "") + "):",
             "",
             "| rule | jobs | CPU (s) | all jobs (s) | longest job (s) | peak max_rss (MB) "
             "| files written | MB written | log files | run files opened (read / written) "
             "| all opens | suggested mem_mb |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rules = result["rules"]
    for rule in sorted(rules, key=lambda r: (-rules[r]["cpu_s"], r)):
        r = rules[rule]
        lines.append(
            f"| {rule} | {r['jobs']} | {r['cpu_s']:.0f} | {r['all_jobs_s']:.0f} | "
            f"{r['longest_job_s']:.0f} | "
            f"{r['peak_max_rss_mb']:.0f} | {r['files_written']} | {_mb(r['bytes_written'])} | "
            f"{r['log_files']} | {r['run_reads']} / {r['run_writes']} | {r['opens']} | "
            f"{grown['rules'][rule].get('suggested_mem_mb', '-')} |")
    return "\n".join(lines) + "\n"


def growth_table(grown: dict[str, Any]) -> str:
    lines = ["| rule | fractions | time exponent | time exponent, two largest "
             "| memory exponent | memory exponent, two largest | files exponent "
             "| opens exponent | peak at the published counts (MB) "
             "| longest job at the published counts (CPU s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for rule, g in sorted(grown["rules"].items()):
        peak = g.get("peak_mb_at_published")
        where = "" if g.get("peak_at_published_measured") else " (extrapolated)"
        lines.append(f"| {rule} | {_fractions(g['fractions'])} | {_exp(g['time_exponent'])} | "
                     f"{_exp(g['time_exponent_largest'])} | {_exp(g['memory_exponent'])} | "
                     f"{_exp(g['memory_exponent_largest'])} | {_exp(g['files_exponent'])} | "
                     f"{_exp(g['opens_exponent'])} | "
                     f"{'-' if peak is None else f'{peak}{where}'} | "
                     f"{g.get('longest_job_cpu_s_at_published', '-')} |")
    if grown.get("not_fitted"):
        lines.append("\nNot fitted (other workflow code than the largest fraction's): "
                     + ", ".join(grown["not_fitted"]) + ".")
    return "\n".join(lines) + "\n"


def check_table(grown: dict[str, Any]) -> str:
    check = grown.get("held_out")
    if not check:
        return ("No run at the published counts beside two smaller fractions of the same "
                "workflow code: nothing to check the extrapolation against.\n")
    rules = {r: c for r, c in check["rules"].items()
             if c["longest_job_cpu_s"] >= MIN_CHECKED_CPU_S}
    lines = [f"Predicted from {_fractions(check['fractions'])} without the run at the "
             f"published counts; rules whose longest job took at least "
             f"{MIN_CHECKED_CPU_S:.0f} CPU s there ({len(rules)} of {len(check['rules'])}):", "",
             "| rule | longest job, CPU s measured | predicted | measured / predicted "
             "| peak MB measured | predicted | measured / predicted |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for rule in sorted(rules, key=lambda r: (-rules[r]["longest_job_cpu_s"], r)):
        c = rules[rule]
        lines.append(f"| {rule} | {c['longest_job_cpu_s']:.0f} | "
                     f"{c['longest_job_cpu_s_predicted']} | {_exp(c['cpu_ratio'])} | "
                     f"{c['peak_mb']} | {c['peak_mb_predicted'] or '-'} | "
                     f"{_exp(c['peak_ratio'])} |")
    return "\n".join(lines) + "\n"


def files_table(results: list[dict[str, Any]], before: list[dict[str, Any]] = ()) -> str:
    lines = ["| fraction | " + " | ".join(f"{t}/ files" for t in TREES) + " | all files | "
             "all MB | jobs | job time (s) | CPU (s) | wall (s) |",
             "|---|" + "---:|" * (len(TREES) + 6)]
    rows = [(f"{r['fraction']} (before packs, {r['commit']})", r) for r in before]
    rows += [(f"{r['fraction']} ({r['commit']})", r) for r in results]
    for label, res in rows:
        cells = [str(res["trees"].get(t, {}).get("files", 0)) for t in TREES]
        lines.append(f"| {label} | " + " | ".join(cells) +
                     f" | {res['files_total']} | {_mb(res['bytes_total'])} | {len(res['jobs'])} "
                     f"| {res['job_s']:.0f} | {res['cpu_s']:.0f} | {res['run_wall_s'] or '-'} |")
    return "\n".join(lines) + "\n"


def replace_blocks(doc: Path, bodies: dict[str, str]) -> None:
    text = doc.read_text()
    for name, body in bodies.items():
        start, end = MARKERS[name]
        if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
            raise WorkflowInputError(doc, f"needs exactly one {start} ... {end} block")
        head, rest = text.split(start)
        _, tail = rest.split(end)
        text = f"{head}{start}\n{body}{end}{tail}"
    write_text(doc, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("collect", help="measurements of one run -> scale-<fraction>.json")
    one.add_argument("--run", required=True, type=Path)
    one.add_argument("--fraction", required=True, type=parse_fraction)
    one.add_argument("--out", required=True, type=Path)
    docs = sub.add_parser("doc", help="growth over all fractions and the tables of the doc")
    docs.add_argument("--results", required=True, type=Path)
    docs.add_argument("--doc", required=True, type=Path)
    docs.add_argument("--before", type=Path, default=None,
                      help="folder of scale-<fraction>.json measured before the packed layout")
    args = parser.parse_args(argv)
    try:
        if args.command == "collect":
            path = write_result(args.out, f"scale-{fraction_tag(args.fraction)}",
                                collect(args.run, args.fraction))
            print(f"wrote {path}", file=sys.stderr)
            return 0
        results = load_results(args.results)
        grown = growth(results)
        write_result(args.results, "scale-growth", grown)
        replace_blocks(args.doc, {"rules": rules_table(results[-1], grown),
                                  "growth": growth_table(grown),
                                  "check": check_table(grown),
                                  "files": files_table(results, load_results(args.before)
                                                       if args.before and args.before.is_dir()
                                                       else [])})
    except WorkflowInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

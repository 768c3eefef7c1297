"""The whole demo graph really runs through Snakemake, twice, and reruns one rule.

These are the slowest tests (a few minutes each on 2 cores); they are what `make demo`
promises: every stage from generated downloads to tables, deterministic outputs.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake

pytestmark = pytest.mark.slow

DEMO_ARGS = ["--configfile", str(REPO / "config.demo.yaml"), "--cores", "2"]

# What byte-identical means for the demo: every prepared dataset file, every metric and
# table. Logs, benchmarks and provenance records (hosts, times) are excluded by design.
COMPARED = ("data", "results/metrics", "results/tables", "results/exclusion",
            "results/detections", "results/masks")


def _digests(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for sub in COMPARED:
        base = root / "demo-run" / sub
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.endswith(".provenance.json"):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = tmp_path_factory.mktemp("demo-a")
    second = tmp_path_factory.mktemp("demo-b")
    run_snakemake(DEMO_ARGS, cwd=first)
    run_snakemake(DEMO_ARGS, cwd=second)
    return first, second


def test_demo_produces_every_stage(demo_runs: tuple[Path, Path]) -> None:
    root = demo_runs[0] / "demo-run"
    for rel in [
        "data/vis/train/instances.json",
        "data/vis/test/fg_instances_cropped.json",
        "data/ovis/test/fg_instances_cropped.json",
        "data/cuhk03/labeled/foreground_query",
        "data/market1501/foregroundImages_cropped",
        "results/tables/main.csv",
        "results/tables/main.md",
        "results/tables/main.tex",
        "results/tables/headline.json",
    ]:
        assert (root / rel).exists(), rel
    proc = run_snakemake([*DEMO_ARGS, "-n"], cwd=demo_runs[0])
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_second_run_is_byte_identical(demo_runs: tuple[Path, Path]) -> None:
    first, second = (_digests(run) for run in demo_runs)
    assert first, "nothing to compare"
    names = lambda d: {k.split("/", 1)[1] for k in d}  # noqa: E731
    assert names(first) == names(second)
    strip = lambda d: {k.split("/", 1)[1]: v for k, v in d.items()}  # noqa: E731
    differing = [k for k, v in strip(first).items() if strip(second)[k] != v]
    assert not differing, f"outputs differ between two demo runs: {differing[:20]}"


def test_targeted_rerun_touches_only_that_rule(demo_runs: tuple[Path, Path]) -> None:
    run = demo_runs[0]
    table = run / "demo-run" / "results" / "tables" / "main.csv"
    before = table.read_bytes()
    proc = run_snakemake([*DEMO_ARGS, "--forcerun", "tables"], cwd=run)
    log = proc.stdout + proc.stderr
    assert "rule tables:" in log or "localrule tables:" in log
    assert "rule train:" not in log and "rule embed:" not in log
    assert table.read_bytes() == before


def test_html_report_collects_tables_and_figures(demo_runs: tuple[Path, Path]) -> None:
    run = demo_runs[0]
    report = run / "report.html"
    run_snakemake([*DEMO_ARGS, "--report", str(report)], cwd=run)
    html = report.read_text(errors="replace")
    assert len(html) > 10_000
    for name in ("main.csv", "headline.json", "privacy_utility.png", "roc.png"):
        assert name in html, name


# ---------------------------------------------------------------- what a config edit reruns

# Jobs that read every training setting's metrics or embeddings: an edit of one setting's
# chain reruns them too.
AGGREGATES = {"tables", "privacy_utility", "roc_curves", "embedding_map", "anonymisation_tables",
              "anonymisation_privacy_utility", "all"}


def planned_jobs(run: Path, edit: dict) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job `snakemake -n` plans after merging ``edit`` into the
    demo config (a second config file: Snakemake merges nested keys)."""
    extra = run / "edit.yaml"
    extra.write_text(yaml.safe_dump(edit))
    proc = run_snakemake(["--configfile", str(REPO / "config.demo.yaml"), str(extra),
                          "--cores", "2", "-n"], cwd=run)
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in (proc.stdout + proc.stderr).splitlines():
        rule = re.match(r"^(?:local)?rule (\w+):$", line)
        if rule:
            jobs.append((rule.group(1), {}))
        wildcards = re.match(r"^\s+wildcards: (.*)$", line)
        if wildcards and jobs:
            jobs[-1][1].update(pair.split("=", 1) for pair in wildcards.group(1).split(", "))
    if not jobs:
        assert "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-3000:]
    # `all` is planned whenever anything is: it only collects the targets.
    return [(rule, wildcards) for rule, wildcards in jobs if rule != "all"]


@pytest.mark.parametrize("edit, rules", [
    # Memory, threads and run time of any rule: no job's result depends on them.
    ({"resources": {"default": {"threads": 1, "mem_mb": 2100, "runtime": 31},
                    "embed": {"threads": 1, "mem_mb": 4100, "runtime": 30},
                    "train": {"threads": 2, "mem_mb": 4000, "runtime": 45}}}, set()),
    # A figure option: only the figure that draws it.
    ({"evaluation": {"figures": {"grid_neighbours": 4}}}, {"query_grid"}),
    ({"evaluation": {"figures": {"embedding_points": 400}}}, {"embedding_map"}),
    # Settings of one stage: that stage's jobs and what reads their results only.
    ({"tuning": {"trials": 4}}, {"tune"}),  # the demo trains with the config's values
    ({"explain": {"queries": 3}}, {"explain"}),
    ({"anonymisation": {"background_level": 1}},
     {"anonymise_vis_test", "anonymise_person_gallery", "embed_anonymised", "metrics_anonymised",
      "anonymisation_tables", "anonymisation_privacy_utility"}),
])
def test_config_edit_reruns_only_the_jobs_that_read_it(
        demo_runs: tuple[Path, Path], edit: dict, rules: set[str]) -> None:
    jobs = planned_jobs(demo_runs[0], edit)
    assert {rule for rule, _ in jobs} == rules, jobs


def test_learning_rate_reruns_that_settings_chain_only(demo_runs: tuple[Path, Path]) -> None:
    jobs = planned_jobs(demo_runs[0], {"training": {"settings": {"ms": {"lr": 3.0e-06}}}})
    planned = {rule for rule, _ in jobs}
    assert {"train", "embed", "metrics", "embed_anonymised", "metrics_anonymised",
            "tables"} <= planned, jobs
    # Every job is the `ms` model's or reads all models' results; nothing else reruns.
    others = [(rule, w) for rule, w in jobs if rule not in AGGREGATES and w.get("setting") != "ms"]
    assert not others, others
    assert sum(rule == "train" for rule, _ in jobs) == 1

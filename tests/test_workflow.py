"""The whole demo graph really runs through Snakemake, twice, and reruns one rule.

These are the slowest tests (a few minutes each on 2 cores); they are what `make demo`
promises: every stage from generated downloads to tables, deterministic outputs.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

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


def test_main_table_has_pretrained_baseline_rows(demo_runs: tuple[Path, Path]) -> None:
    """Re-ID before fine-tuning: the trunks as downloaded are rows like the trained settings."""
    with (demo_runs[0] / "demo-run" / "results" / "tables" / "main.csv").open() as handle:
        rows = {(row["setting"], row["exclusion"]): row for row in csv.DictReader(handle)}
    for setting in ("pretrained_timm_clip", "pretrained_open_clip_b16"):
        for exclusion in ("none", "excluded"):
            row = rows[(setting, exclusion)]
            assert 0.0 <= float(row["person"]) <= 1.0 and 0.0 <= float(row["market1501"]) <= 1.0


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

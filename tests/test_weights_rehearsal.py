"""scripts/benchmark_table.py: per-rule peak memory from Snakemake benchmark files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import benchmark_table  # noqa: E402

from overlearning.core.errors import WorkflowInputError  # noqa: E402

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(root: Path, rule: str, name: str, seconds: float, rss: str) -> None:
    path = root / rule / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t1\t1\n")


def test_table_has_one_row_per_rule_with_its_peak(tmp_path: Path) -> None:
    root = tmp_path / "benchmarks"
    bench(root, "weights", "all", 73.35, "1719.16")
    bench(root, "detect_shard", "market1501/0", 30.0, "2500.5")
    bench(root, "detect_shard", "vis_test/0", 50.0, "3100.2")
    bench(root, "tables", "all", 1.0, "-")
    doc = tmp_path / "hpc.md"
    doc.write_text(f"intro\n{benchmark_table.START}\nold\n{benchmark_table.END}\nafter\n")
    benchmark_table.main(["--benchmarks", str(root), "--doc", str(doc)])
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{benchmark_table.END}\nafter\n")
    assert "old" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    # Highest peak first; 3100.2 MB -> 3100.2 * 1.5 + 1000 = 5650.3 -> 6000.
    assert rows == ["| detect_shard | 2 | 3100 | 50 | 80 | 6000 |",
                    "| weights | 1 | 1719 | 73 | 73 | 4000 |",
                    "| tables | 1 | 0 | 1 | 1 | 1000 |"]


def test_missing_markers_or_benchmarks_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "benchmarks"
    with pytest.raises(WorkflowInputError, match="benchmark folder not found"):
        benchmark_table.read_benchmarks(root)
    bench(root, "weights", "all", 1.0, "10")
    doc = tmp_path / "hpc.md"
    doc.write_text("no markers\n")
    with pytest.raises(WorkflowInputError, match="rehearsal-memory:start"):
        benchmark_table.main(["--benchmarks", str(root), "--doc", str(doc)])
    assert doc.read_text() == "no markers\n"
    (root / "weights" / "all.tsv").write_text("s\tmax_rss\nslow\t1\n")
    with pytest.raises(WorkflowInputError, match="all.tsv"):
        benchmark_table.read_benchmarks(root)

"""The paper config's plan writes a few thousand files, not a million (issue 20).

Counted from the plan of the real workflow with the paper config (`snakemake --summary`
and `snakemake -n` in a folder holding the seven downloads as empty placeholders, so
nothing is read or run) and the layout at the published counts: every declared output
file is one file; a folder output holds what its rule writes at the published counts
(extraction: every member of the official downloads, counted from the generator's plan of
the published sets); every job adds its log and its benchmark file, and Snakemake's record
of every output (.snakemake/metadata, one file each) counts too. The total, everything
under data/ included, stays within what a cluster project's inode quota comfortably holds.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from overlearning.demo.scale import archive_files

REPO = Path(__file__).resolve().parent.parent
LIMIT = 10_000
# Query images per person set at the published counts (a probe holds one per query image).
PUBLISHED_QUERIES = {"cuhk03/labeled": 1400, "cuhk03/detected": 1400, "market1501": 3368}


def snakemake(folder: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
                             "--directory", str(folder), *args], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[str, str]], int]:
    """(output, rule) of every planned output, and the number of jobs."""
    folder = tmp_path_factory.mktemp("paper-plan")
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    for source in paper["datasets"].values():
        for archive in source["archives"]:
            (folder / archive["path"]).parent.mkdir(parents=True, exist_ok=True)
            (folder / archive["path"]).write_bytes(b"")
    summary = snakemake(folder, "--summary")
    rows = list(csv.DictReader(io.StringIO(summary), delimiter="\t"))
    outputs = [(row["output_file"], row["rule"]) for row in rows]
    stats = re.search(r"^total\s+(\d+)$", snakemake(folder, "-n"), re.M)
    assert stats, "snakemake -n printed no job count"
    return outputs, int(stats.group(1))


def files_of(output: str, rule: str) -> int:
    """Files one planned output holds at the published counts."""
    name = Path(output).name
    if "." in name:
        return 1
    if rule == "extract":
        return archive_files()[name]
    if rule == "clothes_probe":
        person_root = output.split("/", 1)[1].rsplit("/probes/", 1)[0]
        return PUBLISHED_QUERIES[person_root]
    raise AssertionError(f"{output} (rule {rule}) is a folder output: say here how many files "
                         "it holds at the published counts")


def test_paper_plan_writes_at_most_ten_thousand_files(plan: tuple[list, int]) -> None:
    outputs, jobs = plan
    per_rule: dict[str, int] = {}
    for output, rule in outputs:
        per_rule[rule] = per_rule.get(rule, 0) + files_of(output, rule)
    runs = jobs - 1  # the target rule `all` runs nothing
    counted = {"outputs": sum(per_rule.values()), "logs": runs, "benchmarks": runs,
               ".snakemake/metadata": len(outputs)}
    total = sum(counted.values())
    largest = sorted(per_rule.items(), key=lambda kv: -kv[1])[:5]
    assert total <= LIMIT, f"{total} files planned ({counted}); largest rules {largest}"


def test_data_holds_no_folder_of_one_file_per_image(plan: tuple[list, int]) -> None:
    """Image sets below data/ are packs: no planned output there is a folder of images."""
    outputs, _ = plan
    folders = [(o, r) for o, r in outputs if o.startswith("data/") and "." not in Path(o).name]
    assert not folders, folders

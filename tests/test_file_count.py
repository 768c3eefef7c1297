"""The paper's run writes a few thousand files, not a million (issue 20).

Counted from the plan: Snakemake's dry run of config.yaml (the paper) lists every job and
its outputs. Every image set is one pack and no rule writes a folder, so the count does not
grow with the number of images: the published counts change the size of the packs, not
their number. Per job there are its outputs, its log and its benchmark file, and
Snakemake keeps one metadata record per output; the downloads read in place add nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from overlearning.workflow.rerun import parse_planned_jobs
from tests.conftest import REPO, run_snakemake

LIMIT = 10_000
DOWNLOADS = ["youtube_vis_2021/train.zip", "ovis/train.zip", "ovis/annotations_train.json",
             "cuhk03/cuhk03-np.zip", "cuhk03/cuhk03-np-mgcam-masks.zip",
             "market1501/Market-1501-v15.09.15.zip", "market1501/Market-1501-mgcam-masks.zip"]


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("paper")
    for name in DOWNLOADS:  # a dry run only needs the configured downloads to exist
        (work / "downloads" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "downloads" / name).write_bytes(b"")
    proc = run_snakemake(["--configfile", str(REPO / "config.yaml"), "--cores", "2", "-n"],
                         cwd=work, timeout=900)
    return proc.stdout + proc.stderr


def test_the_paper_plan_writes_fewer_than_ten_thousand_files(plan: str) -> None:
    jobs = parse_planned_jobs(plan)
    outputs = [path for job in jobs for path in job.outputs]
    logs = re.findall(r"^\s+log: (.*)$", plan, flags=re.MULTILINE)
    benchmarks = re.findall(r"^\s+benchmark: (.*)$", plan, flags=re.MULTILINE)
    assert len(jobs) > 100 and len(logs) == len(benchmarks) == len(jobs)
    # Outputs, one log and one benchmark per job, one Snakemake metadata record per output.
    total = 2 * len(outputs) + len(logs) + len(benchmarks)
    assert total <= LIMIT, total
    # Nothing under data/ is extracted: the downloads are read in place.
    assert {job.rule for job in jobs} >= {"verify_downloads"}
    assert "extract" not in {job.rule for job in jobs}


def test_every_planned_image_set_is_a_pack(plan: str) -> None:
    jobs = parse_planned_jobs(plan)
    by_rule: dict[str, list[str]] = {}
    for job in jobs:
        by_rule.setdefault(job.rule, []).extend(job.outputs)
    image_rules = {"vis_crops": "foregroundImages_cropped.zip",
                   "ovis_crops": "foregroundImages_cropped.zip",
                   "person_set": ".zip", "person_probes": ".zip", "clothes_probe": ".zip",
                   "anonymise_vis_test": "changed.zip",
                   "anonymise_person_gallery": "changed.zip"}
    for rule, suffix in image_rules.items():
        images = [p for p in by_rule[rule] if not p.endswith(".json")]
        assert images and all(p.endswith(suffix) for p in images), (rule, images)
    # No output of any rule is a folder whose size grows with the data: each planned output
    # has a file name with a suffix (a folder of images would be named without one).
    folders = [p for p in by_rule.get("vis_crops", []) + by_rule.get("person_set", [])
               if not Path(p).suffix]
    assert folders == []

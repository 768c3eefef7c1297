"""scripts/rerun_compare.py: rerun one job, compare its outputs with the recorded ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.workflow.rerun import compare_trees, parse_planned_jobs, snapshot, tree_digests
from tests.conftest import REPO, run_snakemake

DRY_RUN = """\
Building DAG of jobs...
[Sat Nov 21 12:16:48 2026]
rule person_set:
    input: data/raw/cuhk03
    output: data/cuhk03/labeled/foreground_query, data/cuhk03/labeled/foregroundImages_cropped
    log: logs/person_set/cuhk03/labeled.log
    jobid: 0
[Sat Nov 21 12:16:48 2026]
localrule tables:
    input: a.json
    output: results/tables/main.csv
"""


def test_parse_planned_jobs():
    jobs = parse_planned_jobs(DRY_RUN)
    assert [(j.rule, j.outputs) for j in jobs] == [
        ("person_set", ("data/cuhk03/labeled/foreground_query",
                        "data/cuhk03/labeled/foregroundImages_cropped")),
        ("tables", ("results/tables/main.csv",)),
    ]


def test_compare_trees_finds_each_difference(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        (root / "sub").mkdir(parents=True)
        (root / "same.txt").write_text("same")
        (root / "sub" / "x.provenance.json").write_text(f'{{"host": "{root.name}"}}')
    (old / "sub" / "changed.json").write_text('{"a": 1}')
    (new / "sub" / "changed.json").write_text('{"a": 2}')
    (old / "gone.txt").write_text("old only")
    (new / "new.txt").write_text("new only")
    assert compare_trees(old, new) == {
        "differing": ["sub/changed.json"], "only_recorded": ["gone.txt"],
        "only_rerun": ["new.txt"],
    }
    # A single file compares as "."; provenance sidecars never count.
    assert compare_trees(old / "same.txt", new / "same.txt") == {
        "differing": [], "only_recorded": [], "only_rerun": []}
    assert "sub/x.provenance.json" not in tree_digests(old)


def test_snapshot_needs_recorded_outputs(tmp_path):
    with pytest.raises(WorkflowInputError, match="no recorded output"):
        snapshot(["results/missing.json"], tmp_path, tmp_path / "keep")


@pytest.mark.slow
def test_rerun_of_a_real_job(tmp_path):
    """The demo downloads job: rerun reproduces it; a changed recorded file is reported."""
    config = ["--configfile", str(REPO / "config.demo.yaml")]
    target = "demo-run/downloads/ovis/annotations_train.json"
    run_snakemake([*config, "--cores", "1", target], cwd=tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [sys.executable, str(REPO / "scripts" / "rerun_compare.py"), target,
               "--report", str(tmp_path / "report.json"), "--", *config, "--cores", "1"]

    same = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert same.returncode == 0, same.stdout + same.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["identical"] is True
    assert [job["rule"] for job in report["jobs"]] == ["demo_downloads"]
    assert len(report["outputs"]) == 7  # every download the job writes, not only the target

    # Pretend the recorded result was made by other code: the rerun no longer matches it.
    recorded = tmp_path / "demo-run" / "downloads" / "ovis" / "annotations_train.json"
    recorded.write_text(recorded.read_text().replace("{", "{ ", 1))
    differ = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert differ.returncode == 1, differ.stdout + differ.stderr
    assert f"DIFFERENT  {target}" in differ.stdout
    kept = tmp_path / ".snakemake" / "rerun-compare" / "recorded" / target
    assert kept.read_bytes() != recorded.read_bytes()  # the recorded copy is kept

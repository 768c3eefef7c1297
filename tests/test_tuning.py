"""Optuna search on the tiny fixtures: real objectives, resumable study, the chosen trade-off."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from training_fixtures import make_job, make_split

from overlearning.core.errors import WorkflowInputError
from overlearning.train.loop import resolve_params
from overlearning.train.study import best_trial, finish_study
from overlearning.train.tuning import run_worker, suggest, tune_setting
from tests.conftest import REPO

SPACE = {"lr": [1e-4, 1e-2], "lr_embed": [1e-4, 1e-2], "confusion_weight": [2.0, 200.0],
         "confusion_gamma": [1.0, 40.0], "confusion_margin": [1e-4, 0.2],
         "center_weight": [0.5, 1000.0], "center_lr": [1e-8, 0.1]}
TUNING = {"settings": ["test"], "trials": 3, "epochs_per_trial": 1, "workers": 1, "seed": 11,
          "space": SPACE}


def test_search_space_follows_the_config() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    values = suggest(trial, "confusion", SPACE)
    assert sorted(values) == ["gamma", "lr", "lr_embed", "margin", "weight"]
    dists = trial.distributions
    assert (dists["gamma"].low, dists["gamma"].high, dists["gamma"].log) == (1.0, 40.0, False)
    assert (dists["margin"].low, dists["margin"].high, dists["margin"].log) == (1e-4, 0.2, True)
    assert dists["lr"].log and dists["weight"].log
    center = suggest(study.ask(), "center", SPACE)
    assert sorted(center) == ["center_lr", "lr", "lr_embed", "weight"]
    assert sorted(suggest(study.ask(), "ms", SPACE)) == ["lr", "lr_embed"]


def test_tuning_records_real_varying_objectives_and_continues(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    job = make_job(tmp_path)
    work, out = tmp_path / "work", tmp_path / "out"
    best = tune_setting(job, TUNING, work, out)
    assert sorted(p.name for p in out.iterdir()) == ["best.json", "study.journal", "trials.csv"]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2"]
    assert [r["slot"] for r in rows] == ["0", "1", "2"] and {r["worker"] for r in rows} == {"0"}
    assert {r["state"] for r in rows} == {"COMPLETE"}
    values = {(float(r["nonperson_map_at_r"]), float(r["person_map_at_r"])) for r in rows}
    assert len(values) > 1  # the objective is the metric, not a constant
    assert all(0 <= v <= 1 for pair in values for v in pair)
    assert json.loads((out / "best.json").read_text()) == best
    chosen = rows[best["trial"]]
    assert best["values"] == {"nonperson_map_at_r": float(chosen["nonperson_map_at_r"]),
                              "person_map_at_r": float(chosen["person_map_at_r"])}
    assert best["values"]["nonperson_map_at_r"] - best["values"]["person_map_at_r"] == \
        max(a - b for a, b in values)
    assert sorted(best["params"]) == ["gamma", "lr", "lr_embed", "margin", "weight"]
    # The final training can take these values instead of the config's.
    tuned = resolve_params(job.params, out / "best.json")
    assert tuned["margin"] == best["params"]["margin"] and tuned["loss"] == "confusion"
    # No trial left a checkpoint behind.
    assert not list(work.rglob("checkpoint.pt"))

    # More trials continue the same study: the first three stay as they were.
    tune_setting(job, {**TUNING, "trials": 4}, work, out)
    again = list(csv.DictReader((out / "trials.csv").open()))
    assert again[:3] == rows and again[3]["slot"] == "3" and again[3]["state"] == "COMPLETE"
    # Another search (here: another seed) is another study, not a continuation.
    tune_setting(job, {**TUNING, "trials": 1, "seed": 12}, work, out)
    assert [r["number"] for r in csv.DictReader((out / "trials.csv").open())] == ["0"]
    assert len([p for p in work.iterdir() if p.is_dir()]) == 1  # the old study was removed


def test_one_worker_study_is_reproducible(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    for name in ("a", "b"):
        tune_setting(job, TUNING, tmp_path / f"work-{name}", tmp_path / name)
    assert (tmp_path / "a" / "trials.csv").read_bytes() == (tmp_path / "b" / "trials.csv").read_bytes()
    assert (tmp_path / "a" / "best.json").read_bytes() == (tmp_path / "b" / "best.json").read_bytes()


# ------------------------------------------------------------- a worker killed mid-trial

KILL_TUNING = {**TUNING, "trials": 2, "epochs_per_trial": 6}


def _worker_command(job, work: Path, worker: str, record: Path) -> list[str]:
    return [sys.executable, str(REPO / "scripts" / "tune_worker.py"), "--setting", job.setting,
            "--params", json.dumps(job.params), "--training", json.dumps(job.training),
            "--tuning", json.dumps(KILL_TUNING), "--trunk", json.dumps(job.trunk_cfg),
            "--cache", str(job.cache), "--train-dir", str(job.train_dir),
            "--valid-dir", str(job.valid_dir), "--person-category", str(job.person_category),
            "--seed", str(job.seed), "--threads", "1", "--work-dir", str(work),
            "--worker", worker, "--record", str(record), "--device", "cpu",
            "--rule", "tune_worker"]


def _kill_worker_after_first_checkpoint(job, work: Path, tmp_path: Path) -> Path:
    """Start worker 0 as the real program; SIGKILL it once its first trial has checkpointed
    an epoch (what SLURM does at a time limit or a node failure). Returns the study folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    record = tmp_path / "killed.json"
    with open(tmp_path / "killed.log", "wb") as log:
        proc = subprocess.Popen(_worker_command(job, work, "0", record), stdout=log,
                                stderr=log, env=env)
        try:
            while proc.poll() is None and not list(work.glob("*/trials/0/checkpoint.pt")):
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    (checkpoint,) = work.glob("*/trials/0/checkpoint.pt")
    assert not record.exists(), (tmp_path / "killed.log").read_text()[-3000:]
    return checkpoint.parents[2]


def _completed(out: Path) -> list[tuple[str, ...]]:
    """(slot, objectives, parameters) of every completed trial, in slot order."""
    rows = [r for r in csv.DictReader((out / "trials.csv").open()) if r["state"] == "COMPLETE"]
    return sorted(tuple(v for k, v in r.items() if k not in ("number", "state", "worker"))
                  for r in rows)


def test_killed_worker_resumes_its_trial_from_the_checkpoint(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    job = make_job(tmp_path)
    tune_setting(job, KILL_TUNING, tmp_path / "work-ref", tmp_path / "ref")
    capfd.readouterr()

    work = tmp_path / "work"
    _kill_worker_after_first_checkpoint(job, work, tmp_path)
    # The same worker's next job (SLURM requeue, or Snakemake run again).
    run_worker(job, KILL_TUNING, work, "0", tmp_path / "worker0.json")
    err = capfd.readouterr().err
    assert "trial 0 (slot 0) was interrupted (its worker 0 was stopped and started again)" in err
    resumed = re.search(r"resumed from checkpoint: epoch (\d+)", err)
    assert resumed and int(resumed.group(1)) >= 2, err[-3000:]
    finish_study([tmp_path / "worker0.json"], 2, job.setting, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert [(r["slot"], r["state"]) for r in rows] == [("0", "INTERRUPTED"), ("0", "COMPLETE"),
                                                        ("1", "COMPLETE")]
    assert rows[0]["lr"] == rows[1]["lr"] and rows[0]["margin"] == rows[1]["margin"]
    # Every slot ends as in a study that was never interrupted: same parameters, same values.
    assert _completed(tmp_path / "out") == _completed(tmp_path / "ref")
    ref, got = (json.loads((tmp_path / d / "best.json").read_text()) for d in ("ref", "out"))
    assert (got["params"], got["values"]) == (ref["params"], ref["values"])


def test_another_worker_takes_over_a_silent_trial(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    job = make_job(tmp_path)
    work = tmp_path / "work"
    study = _kill_worker_after_first_checkpoint(job, work, tmp_path)
    # While the killed worker's heartbeat is fresh, worker 1 leaves its trial alone, runs
    # the other slot and stops; the study is not finished.
    record = tmp_path / "worker1.json"
    run_worker(job, KILL_TUNING, work, "1", record)
    assert [t["slot"] for t in json.loads(record.read_text())["trials"]] == [1]
    with pytest.raises(WorkflowInputError, match=r"unfinished slots \[0\]"):
        finish_study([record], 2, job.setting, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    # An hour without a heartbeat: worker 1's next job takes the trial over and resumes it.
    beat = study / "heartbeats" / "0"
    hour_ago = beat.stat().st_mtime - 3600
    os.utime(beat, (hour_ago, hour_ago))
    capfd.readouterr()
    run_worker(job, KILL_TUNING, work, "1", record)
    err = capfd.readouterr().err
    assert re.search(r"trial 0 \(slot 0\) was interrupted \(no heartbeat for 36\d\d s\)", err), err
    assert re.search(r"resumed from checkpoint: epoch [2-6]", err), err[-3000:]
    best = finish_study([record], 2, job.setting, tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert [(r["slot"], r["state"], r["worker"]) for r in rows] == [
        ("0", "INTERRUPTED", "0"), ("1", "COMPLETE", "1"), ("0", "COMPLETE", "1")]
    assert best["trial"] in {1, 2}
    assert not list(work.rglob("checkpoint.pt"))


def test_best_trade_off_is_taken_from_the_pareto_front() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    for values in [(0.9, 0.8), (0.6, 0.1), (0.5, 0.3), (0.95, 0.9)]:
        study.add_trial(optuna.trial.create_trial(values=list(values)))
    # (0.5, 0.3) is dominated; of the front, 0.6 - 0.1 is the largest difference.
    assert best_trial(study).number == 1


def test_valid_split_without_persons_stops_before_any_trial(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    make_split(tmp_path / "novalid", [(50, 1, 3), (51, 2, 3)])
    with pytest.raises(WorkflowInputError, match="no person has two crops"):
        tune_setting(dataclasses.replace(job, valid_dir=tmp_path / "novalid"), TUNING,
                     tmp_path / "work", tmp_path / "out")
    assert not (tmp_path / "out").exists()

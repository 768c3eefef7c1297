"""Optuna search on the tiny fixtures: real objectives, resumable study, the chosen trade-off."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from training_fixtures import make_job, make_split

from overlearning.core.errors import WorkflowInputError
from overlearning.train.loop import resolve_params
from overlearning.train.tuning import STUDY_FILE, best_trial, suggest, tune_setting

SPACE = {"lr": [1e-4, 1e-2], "lr_embed": [1e-4, 1e-2], "confusion_weight": [2.0, 200.0],
         "confusion_gamma": [1.0, 40.0], "confusion_margin": [1e-4, 0.2],
         "center_weight": [0.5, 1000.0], "center_lr": [1e-8, 0.1]}
TUNING = {"settings": ["test"], "trials": 3, "epochs_per_trial": 1, "seed": 11, "space": SPACE}


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


def test_tuning_records_real_varying_objectives_and_resumes(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    job = make_job(tmp_path)
    work, out = tmp_path / "work", tmp_path / "out"
    best = tune_setting(job, TUNING, work, out)
    assert sorted(p.name for p in out.iterdir()) == ["best.json", "study.sqlite", "trials.csv"]
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["number"] for r in rows] == ["0", "1", "2"]
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

    # A job killed mid-trial leaves a RUNNING trial; the next job fails it and goes on.
    storage = f"sqlite:///{(work / STUDY_FILE).resolve()}"
    optuna.load_study(study_name="tune-test", storage=storage).ask()
    best_again = tune_setting(job, {**TUNING, "trials": 4}, work, out)
    err = capfd.readouterr().err
    assert "trial 3 was interrupted" in err and "3 trials done, running 1 more" in err
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]
    assert best_again["trial"] in {best["trial"], 4}

    # Another search (here: another seed) does not continue this one.
    tune_setting(job, {**TUNING, "trials": 1, "seed": 12}, work, out)
    assert "discarding the study" in capfd.readouterr().err
    assert [r["number"] for r in csv.DictReader((out / "trials.csv").open())] == ["0"]


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

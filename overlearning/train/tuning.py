"""Hyper-parameter search for one loss setting (REFERENCE "Training"), with Optuna.

Each trial trains the setting for ``tuning.epochs_per_trial`` epochs with sampled
parameters and returns the last epoch's validation metrics, which are the two objectives:
maximise non-person MAP@R, minimise person-query MAP@R (the authors' search returned a
constant placeholder here; ours returns the real metric). Sampler: TPE (seeded). Space:
lr and lr_embed log-uniform; confusion weight (log), gamma (linear), margin (log); center
weight (log) and center lr (log); ranges from ``tuning.space``.

The study lives in an SQLite file outside the rule's outputs (``<work dir>/study.sqlite``),
so a killed job resumes with the trials it finished (a trial cut off mid-way is marked
failed and run again). At the end the study is copied to the output folder with
``trials.csv`` and ``best.json``: the Pareto-optimal trial with the largest
``non-person MAP@R - person MAP@R``, its values and its parameters under the setting's
own keys (what ``training.use_tuned`` feeds into the final training).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from overlearning.core.atomic import remove_stale_temporaries, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.data.crop_sets import load_crop_set
from overlearning.train.loop import TUNABLE, TrainJob, fingerprint, fit, log

STUDY_FILE = "study.sqlite"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
OBJECTIVES = ("nonperson_map_at_r", "person_map_at_r")
DIRECTIONS = ("maximize", "minimize")
SELECTION = "max(nonperson_map_at_r - person_map_at_r) over the Pareto front"

# setting key -> (tuning.space key, log scale)
SEARCH: dict[str, dict[str, tuple[str, bool]]] = {
    "ms": {},
    "confusion": {"weight": ("confusion_weight", True), "gamma": ("confusion_gamma", False),
                  "margin": ("confusion_margin", True)},
    "center": {"weight": ("center_weight", True), "center_lr": ("center_lr", True)},
}
COMMON = {"lr": ("lr", True), "lr_embed": ("lr_embed", True)}


def suggest(trial: optuna.Trial, loss: str, space: Mapping[str, Any]) -> dict[str, float]:
    """The trial's parameters, under the setting's keys."""
    values = {}
    for key, (space_key, log_scale) in {**COMMON, **SEARCH[loss]}.items():
        low, high = (float(x) for x in space[space_key])
        values[key] = trial.suggest_float(key, low, high, log=log_scale)
    return values


def _storage(path: Path) -> optuna.storages.RDBStorage:
    # A generous lock timeout: cluster file systems can be slow to hand over SQLite locks.
    return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}",
                                      engine_kwargs={"connect_args": {"timeout": 120}})


def _fail_interrupted(study: optuna.Study) -> None:
    """Trials left RUNNING by a killed job will never finish: mark them failed."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        log(f"trial {trial.number} was interrupted; marked failed, it will be run again")


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The Pareto-optimal trial with the largest non-person minus person MAP@R."""
    front = sorted(study.best_trials, key=lambda t: t.number)
    if not front:
        raise RuntimeError("no trial completed; nothing to choose from")
    return max(front, key=lambda t: t.values[0] - t.values[1])


def trials_csv(study: optuna.Study) -> str:
    """One row per trial (number order): state, the two objectives, the parameters."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names = sorted({name for t in trials for name in t.params})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", *OBJECTIVES, *names])
    for t in trials:
        values = list(t.values) if t.values is not None else ["", ""]
        writer.writerow([t.number, t.state.name, *(repr(v) if isinstance(v, float) else v
                                                   for v in values),
                         *(repr(t.params[n]) if n in t.params else "" for n in names)])
    return out.getvalue()


def check_valid_split(job: TrainJob) -> None:
    """Both objectives need something to retrieve: stop early when the valid split has not."""
    counts = Counter((item.label, item.is_person)
                     for item in load_crop_set(job.valid_dir, job.person_category, "all"))
    for person, what in ((False, "non-person object"), (True, "person")):
        if not any(n > 1 for (_, is_person), n in counts.items() if is_person == person):
            raise WorkflowInputError(job.valid_dir / "fg_instances_cropped.json",
                                     f"no {what} has two crops in the valid split, so its "
                                     "MAP@R (a tuning objective) is undefined")


def study_fingerprint(job: TrainJob, tuning: Mapping[str, Any]) -> str:
    """What a stored study must agree on to be continued (not the number of trials)."""
    fixed = {k: v for k, v in job.params.items() if k not in TUNABLE[job.params["loss"]]}
    search = {k: tuning[k] for k in ("epochs_per_trial", "seed", "space")}
    return fingerprint(dataclasses.replace(job, params=fixed), extra={"tuning": search})


def tune_setting(job: TrainJob, tuning: Mapping[str, Any], work_dir: Path | str,
                 out_dir: Path | str) -> dict[str, Any]:
    """Run (or finish) the study for ``job.setting`` and write study, trials and best."""
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    check_valid_split(job)
    key = study_fingerprint(job, tuning)
    work_dir.mkdir(parents=True, exist_ok=True)
    study_name = f"tune-{job.setting}"
    storage = _storage(work_dir / STUDY_FILE)
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                directions=list(DIRECTIONS))
    if study.user_attrs.get("fingerprint", key) != key:
        log(f"discarding the study in {work_dir}: written for other parameters or data")
        storage.engine.dispose()
        (work_dir / STUDY_FILE).unlink()
        storage = _storage(work_dir / STUDY_FILE)
        study = optuna.create_study(study_name=study_name, storage=storage,
                                    directions=list(DIRECTIONS))
    study.set_user_attr("fingerprint", key)
    _fail_interrupted(study)
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    remaining = int(tuning["trials"]) - done
    # Seeded by how far the study got, so a resumed study stays reproducible.
    study.sampler = optuna.samplers.TPESampler(seed=int(tuning["seed"]) + len(study.trials))
    epochs = int(tuning["epochs_per_trial"])
    loss = job.params["loss"]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        values = suggest(trial, loss, tuning["space"])
        trial_job = dataclasses.replace(job, params={**job.params, **values})
        log(f"trial {trial.number}: {values}")
        history = fit(trial_job, epochs).history
        last = history[-1]
        trial.set_user_attr("history", [{k: row[k] for k in (*OBJECTIVES, "loss")}
                                        for row in history])
        result = tuple(float(last[k]) for k in OBJECTIVES)
        if not all(math.isfinite(v) for v in result):
            raise ValueError(f"validation gave {result}: the valid split needs at least two "
                             "crops of some person and of some non-person object")
        log(f"trial {trial.number}: nonperson MAP@R {result[0]:.4f}, "
            f"person MAP@R {result[1]:.4f}")
        return result

    if remaining > 0:
        log(f"{study_name}: {done} trials done, running {remaining} more")
        study.optimize(objective, n_trials=remaining, catch=(ValueError,))
    chosen = best_trial(study)
    best = {
        "setting": job.setting, "trial": chosen.number,
        "values": dict(zip(OBJECTIVES, chosen.values, strict=True)),
        "params": dict(sorted(chosen.params.items())), "selection": SELECTION,
    }
    table = trials_csv(study)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage.engine.dispose()
    for name in (STUDY_FILE, TRIALS_FILE):
        remove_stale_temporaries(out_dir / name)  # left by a killed tuning job
    tmp = out_dir / f".{STUDY_FILE}.tmp-{os.getpid()}"
    try:
        shutil.copyfile(work_dir / STUDY_FILE, tmp)
        os.replace(tmp, out_dir / STUDY_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    tmp_csv = out_dir / f".{TRIALS_FILE}.tmp-{os.getpid()}"
    tmp_csv.write_text(table)
    os.replace(tmp_csv, out_dir / TRIALS_FILE)
    write_json(out_dir / BEST_FILE, best)
    return best

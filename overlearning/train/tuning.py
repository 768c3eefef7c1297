"""Hyper-parameter search for one loss setting (REFERENCE "Training"), with Optuna, run by
several trial workers at once.

Each trial trains the setting for ``tuning.epochs_per_trial`` epochs with sampled
parameters and returns the last epoch's validation metrics, which are the two objectives:
maximise non-person MAP@R, minimise person-query MAP@R (the authors' search returned a
constant placeholder here; ours returns the real metric). Sampler: TPE. Space: lr and
lr_embed log-uniform; confusion weight (log), gamma (linear), margin (log); center weight
(log) and center lr (log); ranges from ``tuning.space``.

**One study, many workers.** ``tuning.workers`` worker jobs (``run_worker``, one GPU each)
share one study in Optuna's journal file storage (an append-only log; unlike SQLite it
needs no ``fcntl`` locks, which network file systems often break), kept outside the
rules' outputs in ``<work dir>/<search key>/`` (the key: everything a stored study must
agree on, :func:`study_fingerprint`; the layout: overlearning/train/study.py). Each trial
checkpoints every epoch into ``trials/<slot>/`` (keyed by the slot, so that a retry of the
trial finds it) and touches ``heartbeats/<trial number>`` every ``HEARTBEAT_S`` seconds.

A worker takes, under the claim lock: first a slot whose last trial was interrupted (a retry
with the same parameters, which resumes from the slot's checkpoint), else a new slot while
fewer than ``tuning.trials`` exist; it stops when neither is left. A trial counts as
interrupted when it is still RUNNING and either belongs to this very worker (its previous
job was killed: SLURM requeue, time limit, node failure) or its heartbeat is older than
``STALE_AFTER_S`` (its worker is gone); it is then marked FAIL with a user attribute
``interrupted`` and retried. A trial whose metrics are not finite fails for good.

**Determinism.** The sampler of each new slot is TPE seeded with ``tuning.seed + slot``,
so with one worker the study (parameters and values of every slot) depends only on the
seed and the data, also across kills and restarts (interrupted attempts are FAIL and
TPE ignores them). With several workers the parameters of a slot depend on which trials
had finished when it was sampled, i.e. on timing: see docs/training.md.

At the end ``finish_study`` (the ``tune`` rule) checks that every slot is finished and
writes ``study.journal`` (a copy), ``trials.csv`` (every trial, retries included) and
``best.json``: the Pareto-optimal trial with the largest ``non-person MAP@R - person
MAP@R``, its values and its parameters under the setting's own keys (what
``training.use_tuned`` feeds into the final training).
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from overlearning.core.atomic import remove_path, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.data.crop_sets import load_crop_set
from overlearning.train.heartbeat import Heartbeat, age, touch
from overlearning.train.loop import TUNABLE, TrainJob, fingerprint, fit, log
from overlearning.train.study import (
    OBJECTIVES,
    STUDY_FILE,
    claim_lock,
    finish_study,
    interrupted,
    open_study,
    slot_attempts,
    study_dir,
    trial_slot,
)

# A heartbeat every 30 s; a trial silent for 10 min is taken for dead (network file systems
# cache file attributes for up to a minute; a busy node can stall for a while).
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0

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


# ----------------------------------------------------------------------------------------
# Trials


def _fail_interrupted(study: optuna.Study, folder: Path, worker: str,
                      stale_after: float) -> None:
    """Mark RUNNING trials that will never finish as FAIL (interrupted), for a retry."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        mine = trial.user_attrs.get("worker") == worker
        silent = age(folder / "heartbeats" / str(trial.number))
        if mine:
            reason = f"its worker {worker} was stopped and started again"
        elif silent is None or silent > stale_after:
            reason = (f"no heartbeat for {silent:.0f} s" if silent is not None
                      else "no heartbeat at all")
        else:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "interrupted", reason)
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # its worker finished it after all
        log(f"trial {trial.number} (slot {trial_slot(trial)}) was interrupted ({reason}); "
            "it will be run again")


def _next_trial(study: optuna.Study, tuning: Mapping[str, Any], loss: str,
                worker: str) -> tuple[optuna.Trial, int, dict[str, float]] | None:
    """Under the claim lock: a retry of an interrupted slot, else a new slot, else None."""
    slots = slot_attempts(study.get_trials(deepcopy=False))
    retry = [s for s, attempts in sorted(slots.items()) if interrupted(attempts[-1])]
    if retry:
        slot = retry[0]
        last = slots[slot][-1]
        study.enqueue_trial(dict(last.params), user_attrs={"retry_of": last.number})
    elif len(slots) < int(tuning["trials"]):
        slot = len(slots)
        # Seeded per slot: the slot's parameters follow from the finished slots alone.
        study.sampler = optuna.samplers.TPESampler(seed=int(tuning["seed"]) + slot)
    else:
        return None
    trial = study.ask()
    trial.set_user_attr("slot", slot)
    trial.set_user_attr("worker", worker)
    trial.set_user_attr("host", socket.gethostname())
    values = suggest(trial, loss, tuning["space"])
    return trial, slot, values


def _run_trial(study: optuna.Study, trial: optuna.Trial, slot: int, values: dict[str, float],
               job: TrainJob, epochs: int, folder: Path, heartbeat: float) -> str:
    """Train the trial (resuming its slot's checkpoint), tell the study; its final state."""
    checkpoint_dir = folder / "trials" / str(slot)
    trial_job = dataclasses.replace(job, params={**job.params, **values})
    log(f"trial {trial.number} (slot {slot}): {values}")
    with Heartbeat(folder / "heartbeats" / str(trial.number), heartbeat):
        history = fit(trial_job, epochs, checkpoint_dir).history
    result = tuple(float(history[-1][k]) for k in OBJECTIVES)
    try:
        trial.set_user_attr("history", [{k: row[k] for k in (*OBJECTIVES, "loss")}
                                        for row in history])
        if all(math.isfinite(v) for v in result):
            study.tell(trial, result)
            state = "COMPLETE"
            log(f"trial {trial.number}: nonperson MAP@R {result[0]:.4f}, "
                f"person MAP@R {result[1]:.4f}")
        else:
            trial.set_user_attr("error", f"validation gave {result}")
            study.tell(trial, state=TrialState.FAIL)
            state = "FAIL"
            log(f"trial {trial.number} failed: validation gave {result}")
    except UpdateFinishedTrialError:
        # Taken for dead meanwhile (a silent heartbeat) and retried elsewhere.
        log(f"trial {trial.number} was marked interrupted by another worker; result dropped")
        state = "DROPPED"
    remove_path(checkpoint_dir)
    (folder / "heartbeats" / str(trial.number)).unlink(missing_ok=True)
    return state


def run_worker(job: TrainJob, tuning: Mapping[str, Any], work_dir: Path | str, worker: str,
               record: Path | str | None = None, heartbeat: float = HEARTBEAT_S,
               stale_after: float = STALE_AFTER_S) -> dict[str, Any]:
    """Run trials of the shared study until no slot is left to start; write ``record``.

    The record (the ``tune_worker`` rule's output) names the study and the trials this
    worker ran.
    """
    check_valid_split(job)
    key = study_fingerprint(job, tuning)
    folder = study_dir(Path(work_dir), key)
    study = open_study(folder, create=True)
    epochs = int(tuning["epochs_per_trial"])
    ran: list[dict[str, Any]] = []
    while True:
        with claim_lock(folder):
            _fail_interrupted(study, folder, worker, stale_after)
            claimed = _next_trial(study, tuning, job.params["loss"], worker)
            if claimed is not None:
                touch(folder / "heartbeats" / str(claimed[0].number))
        if claimed is None:
            break
        trial, slot, values = claimed
        state = _run_trial(study, trial, slot, values, job, epochs, folder, heartbeat)
        ran.append({"number": trial.number, "slot": slot, "state": state})
    log(f"worker {worker}: no slot left to start ({len(ran)} trials run here)")
    summary = {"setting": job.setting, "worker": worker, "study": key,
               "journal": str(folder / STUDY_FILE), "trials": ran}
    if record is not None:
        write_json(record, summary)
    return summary


# ----------------------------------------------------------------------------------------
# Checks and keys


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
    """What a stored study must agree on to be continued (not the number of trials or
    workers: adding trials or workers continues the same search)."""
    fixed = {k: v for k, v in job.params.items() if k not in TUNABLE[job.params["loss"]]}
    search = {k: tuning[k] for k in ("epochs_per_trial", "seed", "space")}
    return fingerprint(dataclasses.replace(job, params=fixed), extra={"tuning": search})


def tune_setting(job: TrainJob, tuning: Mapping[str, Any], work_dir: Path | str,
                 out_dir: Path | str) -> dict[str, Any]:
    """The whole search in this process: one worker, then the choice (tests, small runs)."""
    out_dir = Path(out_dir)
    record = Path(work_dir) / f"worker-{os.getpid()}.json"
    run_worker(job, tuning, work_dir, "0", record)
    try:
        return finish_study([record], int(tuning["trials"]), job.setting, out_dir)
    finally:
        record.unlink(missing_ok=True)


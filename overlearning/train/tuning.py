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
needs no ``fcntl`` locks, which network file systems often break). The study of a search
lives in ``<work dir>/<search key>/`` (the key: everything a stored study must agree on,
:func:`study_fingerprint`), outside the rules' outputs:

- ``study.journal`` (+ its lock ``study.journal.lock``, a symlink: works on NFS v2+);
- ``claim.lock``: held while a worker decides which trial to run next, so that the study
  gets exactly ``tuning.trials`` *slots* (trials counted as the search counts them, retries
  not included) however many workers ask at once;
- ``trials/<slot>/checkpoint.pt``: the running trial's per-epoch checkpoint, keyed by the
  slot so that a retry of the trial finds it; removed when the trial ends;
- ``heartbeats/<trial number>``: touched every ``HEARTBEAT_S`` seconds while a trial runs.

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

import csv
import dataclasses
import io
import math
import os
import shutil
import socket
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import (
    JournalFileBackend,
    JournalFileSymlinkLock,
    JournalStorage,
)
from optuna.trial import FrozenTrial, TrialState

from overlearning.core.atomic import read_json, remove_path, write_json, write_text
from overlearning.core.errors import WorkflowInputError
from overlearning.data.crop_sets import load_crop_set
from overlearning.train.heartbeat import Heartbeat, age, touch
from overlearning.train.loop import TUNABLE, TrainJob, fingerprint, fit, log

STUDY_FILE = "study.journal"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
CLAIM_LOCK = "claim"
OBJECTIVES = ("nonperson_map_at_r", "person_map_at_r")
DIRECTIONS = ("maximize", "minimize")
SELECTION = "max(nonperson_map_at_r - person_map_at_r) over the Pareto front"
# A heartbeat every 30 s; a trial silent for 10 min is taken for dead (network file systems
# cache file attributes for up to a minute; a busy node can stall for a while).
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
# A lock left by a killed process is broken after this long (the holders' work under it
# takes milliseconds to seconds).
LOCK_GRACE_S = 30

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
# The shared study


def study_dir(work_dir: Path, key: str) -> Path:
    return Path(work_dir) / key[:16]


def open_study(folder: Path, create: bool) -> optuna.Study:
    """The study in ``folder``'s journal (created by the first worker that gets here)."""
    path = folder / STUDY_FILE
    if not create and not path.is_file():
        raise WorkflowInputError(path, "no tuning study here: the tune_worker jobs have not run")
    folder.mkdir(parents=True, exist_ok=True)
    lock = JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_S)
    storage = JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    # Two workers creating it at once: one creates, the other loads (load_if_exists).
    return optuna.create_study(study_name="tune", storage=storage, load_if_exists=True,
                               directions=list(DIRECTIONS))


@contextmanager
def claim_lock(folder: Path) -> Iterator[None]:
    """One worker at a time decides what to run next (a symlink lock: NFS-safe)."""
    lock = JournalFileSymlinkLock(str(folder / CLAIM_LOCK), grace_period=LOCK_GRACE_S)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _slot(trial: FrozenTrial) -> int | None:
    slot = trial.user_attrs.get("slot")
    return None if slot is None else int(slot)


def slot_attempts(trials: list[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """slot -> its trials in number order (the first try, then the retries)."""
    slots: dict[int, list[FrozenTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        slot = _slot(trial)
        if slot is not None:
            slots.setdefault(slot, []).append(trial)
    return slots


def interrupted(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and "interrupted" in trial.user_attrs


def slot_finished(attempts: list[FrozenTrial]) -> bool:
    """Its last trial completed, or failed for a reason a retry would not change."""
    last = attempts[-1]
    return last.state == TrialState.COMPLETE or (last.state == TrialState.FAIL
                                                 and not interrupted(last))


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
        log(f"trial {trial.number} (slot {_slot(trial)}) was interrupted ({reason}); "
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
# The end of the search


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The Pareto-optimal trial with the largest non-person minus person MAP@R."""
    front = sorted(study.best_trials, key=lambda t: t.number)
    if not front:
        raise RuntimeError("no trial completed; nothing to choose from")
    return max(front, key=lambda t: t.values[0] - t.values[1])


def trials_csv(study: optuna.Study) -> str:
    """One row per trial (number order): state, slot, worker, the objectives, the parameters."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    names = sorted({name for t in trials for name in t.params})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["number", "state", "slot", "worker", *OBJECTIVES, *names])
    for t in trials:
        values = list(t.values) if t.values is not None else ["", ""]
        state = "INTERRUPTED" if interrupted(t) else t.state.name
        writer.writerow([t.number, state, t.user_attrs.get("slot", ""),
                         t.user_attrs.get("worker", ""),
                         *(repr(v) if isinstance(v, float) else v for v in values),
                         *(repr(t.params[n]) if n in t.params else "" for n in names)])
    return out.getvalue()


def study_of_records(records: list[Path]) -> tuple[str, Path]:
    """(search key, study folder) the workers' records agree on."""
    if not records:
        raise WorkflowInputError("tune", "no worker record given")
    found = {}
    for path in records:
        record = read_json(path)
        try:
            found[path] = (str(record["study"]), Path(record["journal"]).parent)
        except (KeyError, TypeError):
            raise WorkflowInputError(path, "not a tuning worker record (no study)") from None
    first = next(iter(found.values()))
    for path, value in found.items():
        if value != first:
            raise WorkflowInputError(path, f"written for another study than {records[0]}")
    return first


def finish_study(records: list[Path], trials: int, setting: str,
                 out_dir: Path | str) -> dict[str, Any]:
    """Check that the study has every slot finished; write journal copy, trials.csv, best."""
    out_dir = Path(out_dir)
    key, folder = study_of_records(records)
    study = open_study(folder, create=False)
    slots = slot_attempts(study.get_trials(deepcopy=False))
    unfinished = sorted(s for s, attempts in slots.items() if not slot_finished(attempts))
    if len(slots) < trials or unfinished:
        raise WorkflowInputError(folder / STUDY_FILE, f"{len(slots)} of {trials} trials "
                                 f"started, unfinished slots {unfinished}: run the "
                                 "tune_worker jobs again (they resume the study)")
    chosen = best_trial(study)
    best = {
        "setting": setting, "trial": chosen.number,
        "values": dict(zip(OBJECTIVES, chosen.values, strict=True)),
        "params": dict(sorted(chosen.params.items())), "selection": SELECTION,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / TRIALS_FILE, trials_csv(study))
    write_text(out_dir / STUDY_FILE, (folder / STUDY_FILE).read_text())
    write_json(out_dir / BEST_FILE, best)
    # What no later run needs: heartbeats, and the studies of other searches beside this one.
    remove_path(folder / "heartbeats")
    for other in folder.parent.iterdir():
        if other.is_dir() and other.name != folder.name and (other / STUDY_FILE).is_file():
            shutil.rmtree(other)
    return best


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


"""The shared Optuna study of a hyper-parameter search, and its end (no torch here: the
`tune` rule that closes a search runs beside Snakemake, and imports only this).

The study of a search lives in ``<work dir>/<search key>/`` (docs: overlearning/train/
tuning.py, which runs the trials):

- ``study.journal``: Optuna's journal file storage, an append-only log; unlike SQLite it
  needs no ``fcntl`` locks, which network file systems often break. Its lock
  (``study.journal.lock``) is a symbolic link, atomic on NFS v2 and later; a lock left by
  a killed process is broken after ``LOCK_GRACE_S``;
- ``claim.lock``: held while a worker decides which trial to run next;
- ``trials/<slot>/checkpoint.pt`` and ``heartbeats/<trial number>`` of running trials.

Trials are counted in *slots*: the search has ``tuning.trials`` slots; a slot's first trial
and its retries (after an interruption) carry the slot number as the user attribute
``slot``. An interrupted trial is FAIL with a user attribute ``interrupted``.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import (
    JournalFileBackend,
    JournalFileSymlinkLock,
    JournalStorage,
)
from optuna.trial import FrozenTrial, TrialState

from overlearning.core.atomic import read_json, remove_path, write_json, write_text
from overlearning.core.errors import WorkflowInputError

STUDY_FILE = "study.journal"
TRIALS_FILE = "trials.csv"
BEST_FILE = "best.json"
CLAIM_LOCK = "claim"
OBJECTIVES = ("nonperson_map_at_r", "person_map_at_r")
DIRECTIONS = ("maximize", "minimize")
SELECTION = "max(nonperson_map_at_r - person_map_at_r) over the Pareto front"
# A lock left by a killed process is broken after this long (the holders' work under it
# takes milliseconds to seconds).
LOCK_GRACE_S = 30


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


def trial_slot(trial: FrozenTrial) -> int | None:
    slot = trial.user_attrs.get("slot")
    return None if slot is None else int(slot)


def slot_attempts(trials: list[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """slot -> its trials in number order (the first try, then the retries)."""
    slots: dict[int, list[FrozenTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        slot = trial_slot(trial)
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

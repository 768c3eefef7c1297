"""Reading inputs strictly and writing outputs all-or-nothing.

A rule that fails half-way must leave nothing that Snakemake or a later step could take for a
finished output, so files go to a temporary name and directories to a temporary sibling,
and are renamed into place only when complete.

Temporary names carry the writing process's id (``.<name>.tmp-<pid>``). A job killed
with SIGKILL (or a node that died) cannot clean up after itself, so the next job writing
the same output removes the siblings whose process is gone (:func:`remove_stale_temporaries`);
a job stopped with SIGTERM (Snakemake, Slurm's ``scancel``) unwinds and removes its own.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError, WorkflowOutputError
from overlearning.core.nesting import deep_position

# A write that fails for these reasons is the machine's problem, not the code's: one line.
NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EFBIG: "file too large for the filesystem",
           errno.ENAMETOOLONG: "name longer than the filesystem allows"}


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN / Infinity, which are not JSON and would be written on as such.
    raise ValueError(f"non-standard constant {name} (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999 overflows to infinity
        raise ValueError(f"number {text} overflows to infinity")
    return value


def read_json(path: Path | str) -> Any:
    """Parse a JSON file; a missing, malformed, non-standard (NaN) or absurdly deeply nested
    file stops with its path."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return json.load(handle, parse_constant=_refuse_constant,
                             parse_float=_finite_float)
    except FileNotFoundError:
        raise WorkflowInputError(path, "file not found") from None
    except RecursionError:
        raise WorkflowInputError(path, _too_deep(path.read_bytes())) from None
    except (OSError, ValueError) as exc:
        raise WorkflowInputError(path, f"not readable as JSON ({exc})") from None


def parse_json(data: bytes, where: object) -> Any:
    """:func:`read_json` for bytes already read (a member of a download read in place)."""
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise WorkflowInputError(where, _too_deep(data)) from None
    except ValueError as exc:
        raise WorkflowInputError(where, f"not readable as JSON ({exc})") from None


def _too_deep(data: bytes) -> str:
    where = deep_position(data)
    spot = "" if where is None else f" at line {where[1]}, column {where[2]} (byte {where[0]})"
    return f"expected JSON nested a few levels deep, found nesting too deep to read{spot}"


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn a write failing for lack of room (full disk, quota, file size, name length) into
    one line naming the file being written (the failing file if the error names one)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        target = exc.filename if exc.filename else path
        raise WorkflowOutputError(target, f"cannot write: {NO_ROOM[exc.errno]} "
                                          f"({exc.strerror}); nothing of it was kept") from None


def dumps(obj: Any) -> str:
    # Sorted keys and fixed separators: the same content always gives the same bytes.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as canonical JSON to ``path`` through a temporary file."""
    write_text(path, dumps(obj) + "\n")


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write beside the target, then rename: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # a killed job's half-written copy of this file
    tmp = temporary_name(path)
    try:
        with writing(path):
            tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode())


def remove_path(path: Path) -> None:
    """Remove a file, link or folder tree if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ``.<name>.<kind>-<pid>``: every temporary this project makes beside an output.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|partial|old)-(?P<pid>\d+)$")


def temporary_name(final: Path | str, kind: str = "tmp") -> Path:
    """The sibling ``.<name>.<kind>-<pid>`` this process builds ``final`` in."""
    final = Path(final)
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}")


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temporaries(final: Path | str) -> list[Path]:
    """Remove the temporaries of ``final`` left by processes that no longer exist.

    Only siblings named ``.<final name>.{tmp,partial,old}-<pid>`` are candidates, and only
    when that pid is not a running process here (nor this one): a live writer's folder, a
    different output's temporaries and every other file are left alone. On a cluster a
    pid from another node may exist here by chance; that temporary is then kept, not lost.
    """
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return []
    removed = []
    for entry in parent.glob(f".{_glob_escape(final.name)}.*-*"):
        match = _TEMPORARY.match(entry.name)
        if match is None or match["name"] != final.name:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or process_alive(pid):
            continue
        remove_path(entry)
        removed.append(entry)
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` inside the block so ``finally`` clean-ups run.

    Python dies on SIGTERM without unwinding; Snakemake and Slurm stop jobs with it. Only
    the main thread may set handlers, and a handler someone else installed is kept.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _outside(where: str, tmp: Path, final: Path) -> str:
    inside = os.path.relpath(where, tmp) if where.startswith(str(tmp)) else None
    return str(final / inside) if inside and not inside.startswith("..") else where


@contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Yield an empty sibling directory that replaces ``final`` when the block succeeds.

    Temporaries of ``final`` left by killed jobs are removed first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = temporary_name(final)
    remove_path(tmp)
    tmp.mkdir()
    with terminate_as_exit():
        try:
            try:
                with writing(final):
                    yield tmp
            except WorkflowOutputError as exc:
                # Name the output the file belongs to, not its temporary folder.
                raise WorkflowOutputError(_outside(exc.where, tmp, final), exc.problem) from None
            remove_path(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

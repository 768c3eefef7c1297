"""Checkpoint writes off the training's critical path.

``CheckpointWriter.save`` takes a CPU copy of the state (tensors on the GPU are copied
into pinned memory on the current stream, so the next step's in-place updates come after
the copy; CPU tensors are cloned) and hands it to a background thread that writes it
atomically (temporary name, fsync, rename). Training goes on meanwhile. ``wait`` returns
once the last write is on disk and raises the writer's error, if any. The thread is not a
daemon: an interpreter that exits normally still finishes the file; a killed process
leaves the previous checkpoint, never half a new one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from overlearning.core.atomic import remove_stale_temporaries, temporary_name, writing


def cpu_copy(obj: Any, pinned: bool) -> Any:
    """``obj`` with every tensor replaced by a CPU copy of it (containers copied too)."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach()
        if tensor.device.type == "cpu":
            return tensor.clone()
        target = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=pinned)
        return target.copy_(tensor, non_blocking=pinned)
    if isinstance(obj, dict):
        return {key: cpu_copy(value, pinned) for key, value in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(value, pinned) for value in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_copy(value, pinned) for value in obj)
    return obj


def write_atomically(path: Path, state: Any) -> None:
    """torch.save straight to a temporary file (no in-memory copy), fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)  # a half-written checkpoint of a killed run
    tmp = temporary_name(path)
    try:
        with writing(path), open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def snapshot(state: Any) -> tuple[Any, Any]:
    """(CPU copy of ``state``, CUDA event after which the copy is complete, or None)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    copy = cpu_copy(state, pinned=cuda)
    event = None
    if cuda:
        event = torch.cuda.Event()
        event.record()
    return copy, event


class BackgroundTask:
    """One function at a time in a non-daemon thread; ``wait`` joins and re-raises."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, fn: Callable[[], None]) -> None:
        self.wait()

        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - re-raised by wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name=self.name, daemon=False)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class CheckpointWriter:
    """One background write at a time; a new ``save`` first waits for the previous one."""

    def __init__(self, write: Callable[[Path, Any], None] = write_atomically) -> None:
        self._write = write
        self._task = BackgroundTask("checkpoint-writer")

    def save(self, path: Path, state: Any) -> None:
        self.wait()
        copy, event = snapshot(state)
        self._task.start(lambda: self.write_snapshot(path, copy, event))

    def write_snapshot(self, path: Path, copy: Any, event: Any) -> None:
        """Write a ``snapshot`` now, in the calling thread."""
        if event is not None:
            event.synchronize()  # the pinned copies have landed
        self._write(path, copy)

    def wait(self) -> None:
        self._task.wait()

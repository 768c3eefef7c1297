"""Liveness of long-running work seen from other machines through a shared file system.

A process that works on something touches one file every few seconds (``Heartbeat``, a
daemon thread); another process judges it by the file's age (``age``). Ages are measured
against the modification time of a file the judge has just touched in the same folder, not
against its own clock: both times then come from the same file server, so clock skew
between compute nodes does not make a live worker look dead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

CLOCK_FILE = ".clock"


def touch(path: Path) -> None:
    """Create ``path`` or set its modification time to now (the file server's now)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a"):
        pass
    os.utime(path, None)


def age(path: Path) -> float | None:
    """Seconds since ``path`` was last touched, on its folder's clock; None if it is missing."""
    clock = path.parent / CLOCK_FILE
    touch(clock)
    try:
        beat = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, clock.stat().st_mtime - beat)


class Heartbeat:
    """Touches ``path`` now and then every ``interval`` seconds until the block ends."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat {path.name}",
                                        daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                touch(self.path)
            except OSError:
                # A file server hiccup: the next beat tries again; a long outage makes the
                # work look stale to others, which is what it then is.
                continue

    def __enter__(self) -> Heartbeat:
        touch(self.path)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

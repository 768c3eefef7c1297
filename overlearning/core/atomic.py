"""Reading inputs strictly and writing outputs all-or-nothing.

A rule that fails half-way must leave nothing that Snakemake or a later step could take for a
finished output, so files go to a temporary name and directories to a temporary sibling,
and are renamed into place only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError


def read_json(path: Path | str) -> Any:
    """Parse a JSON file; a missing or malformed file stops with its path."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise WorkflowInputError(path, "file not found") from None
    except (OSError, ValueError) as exc:
        raise WorkflowInputError(path, f"not readable as JSON ({exc})") from None


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
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_directory(final: Path | str) -> Iterator[Path]:
    """Yield an empty sibling directory that replaces ``final`` when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _remove(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)

"""Paths named by data files, kept inside the folder they are declared relative to.

A dataset's JSON names its frames, a detection file its images, an exclusion list its
crops. Those names come from outside the project (a download, a colleague's copy), so a
name that is absolute, holds a ``..`` component or runs through a link that leaves the
folder could make a rule read or write anywhere. :func:`contained` is the one check every
such name passes before anything is read or written: it refuses those names, naming the
data file, the entry and the offending path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from overlearning.core.errors import WorkflowInputError

_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative(relative: object, source: object, entry: str) -> str:
    """``relative`` as a '/'-separated relative path, or a one-line error naming ``entry``.

    Lexical only (no file system access): absolute names, Windows drive and backslash
    forms, NUL bytes, empty names and ``..`` components are refused.
    """
    if not isinstance(relative, str) or not relative:
        raise WorkflowInputError(source, f"{entry}: expected a non-empty relative path, "
                                         f"found {relative!r}")
    if "\x00" in relative:
        raise WorkflowInputError(source, f"{entry}: NUL byte in path {relative!r}")
    clean = relative.replace("\\", "/")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise WorkflowInputError(source, f"{entry}: absolute path {relative!r} refused "
                                         "(expected a path relative to its folder)")
    parts = clean.split("/")
    if ".." in parts:
        raise WorkflowInputError(source, f"{entry}: '..' in path {relative!r} refused "
                                         "(it would leave its folder)")
    return "/".join(part for part in parts if part not in ("", "."))


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def contained(root: Path | str, relative: object, source: object, entry: str) -> Path:
    """``root / relative``, refused unless it stays inside ``root`` once links are resolved.

    ``source`` is the data file that named the path and ``entry`` where in it (a JSON
    path, a key); both go into the error, together with the offending path. Call it before
    reading or writing the path: nothing outside ``root`` is ever touched.
    """
    clean = check_relative(relative, source, entry)
    root = Path(root)
    candidate = root / clean
    real_root = os.path.realpath(root)
    real = os.path.realpath(candidate)
    if not _inside(real_root, real):
        raise WorkflowInputError(source, f"{entry}: path {relative!r} resolves to {real}, "
                                         f"outside {root} (a link leaving the folder)")
    return candidate

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
# Longest file or folder name (one path component), in bytes, on Linux filesystems (ext4,
# XFS, Lustre, GPFS, tmpfs); a longer name cannot be written, and a derived name (a crop
# named after its frame) can be longer than the name it came from.
NAME_MAX = 255


def check_relative(relative: object, source: object, entry: str) -> str:
    """``relative`` as a '/'-separated relative path, or a one-line error naming ``entry``.

    Lexical only (no file system access): absolute names, Windows drive and backslash
    forms, NUL bytes, empty names, ``..`` components and components longer than
    ``NAME_MAX`` bytes are refused.
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
    for part in parts:
        check_name_length(part, source, entry)
    return "/".join(part for part in parts if part not in ("", "."))


def check_name_length(name: str, source: object, entry: str) -> None:
    """One file or folder name of at most ``NAME_MAX`` bytes (UTF-8), or a one-line error."""
    size = len(name.encode("utf-8", "surrogateescape"))
    if size > NAME_MAX:
        shown = name if len(name) <= 40 else f"{name[:20]}...{name[-12:]}"
        raise WorkflowInputError(source, f"{entry}: expected file names of at most {NAME_MAX} "
                                         f"bytes, found {shown!r} ({size} bytes)")


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

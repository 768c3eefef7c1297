"""File digests, streamed so that multi-GB checkpoints and archives never sit in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 20


def file_digests(path: Path | str, algorithms: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """{algorithm: hex digest} of one file, read once for all algorithms."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            for digest in hashes.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def sha256_file(path: Path | str) -> str:
    """The sha256 hex digest of one file."""
    return file_digests(path, ("sha256",))["sha256"]

"""Shared test fixtures: repository paths and a Snakemake runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run_snakemake(args: list[str], cwd: Path, timeout: int = 1800,
                  check: bool = True) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI on this repository's Snakefile in ``cwd``."""
    # Rules run `python scripts/...`: this interpreter's bin folder comes first on PATH.
    path = os.pathsep.join([str(SNAKEMAKE.parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PYTHONHASHSEED="0", PATH=path)
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-5000:]}\n{proc.stderr[-10000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO

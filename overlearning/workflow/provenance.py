"""Where a result came from: a ``<name>.provenance.json`` written beside each metrics file and table.

It records what is needed to reproduce or audit the result: the workflow's git commit (and
whether the checkout had local changes), a hash of the resolved configuration, the
container image and its digest, the Python / torch / CUDA versions, the GPU, the host and
the SLURM job. These facts differ between machines and runs, so they live in a sidecar file
and never inside the result itself (results stay byte-identical across runs).

Importing this module is cheap: torch is imported only when a record is written.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from overlearning.core.hashing import sha256_file
from overlearning.workflow.config import config_hash

PROVENANCE_SUFFIX = ".provenance.json"
# The Snakefile hashes the resolved configuration once and exports the hash in this
# variable; every job (local, SLURM, container) inherits it. Jobs therefore record which
# configuration made them without receiving the configuration as a param: a param would
# make every edit of any config key (a memory request, a figure option) rerun every job.
CONFIG_HASH_ENV = "OVERLEARNING_CONFIG_SHA256"
SCHEMA_VERSION = 1

# The checkout the running code comes from (the package lives at <checkout>/overlearning).
CHECKOUT = Path(__file__).resolve().parents[2]

# Apptainer (and its predecessor Singularity) name the running image in these variables.
_CONTAINER_VARS = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
# Labels that Apptainer stores inside every image it builds (our .def files add the base
# image's digest and the lock file's hash there).
_LABELS_FILE = Path("/.singularity.d/labels.json")


def provenance_path(target: Path | str) -> Path:
    """``metrics/x/none.json`` -> ``metrics/x/none.provenance.json``."""
    target = Path(target)
    return target.with_name(target.stem + PROVENANCE_SUFFIX)


def _run_git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            # The checkout may belong to another user inside a container or a SLURM job;
            # git would then refuse to read it ("dubious ownership").
            ["git", "-c", "safe.directory=*", *args],
            cwd=cwd, capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _commit_from_git_dir(checkout: Path) -> str | None:
    """Read HEAD's commit straight from .git when no git binary exists (minimal images)."""
    git_dir = checkout / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        loose = git_dir / ref
        if loose.is_file():
            return loose.read_text().strip() or None
        packed = git_dir / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None


def git_state(checkout: Path = CHECKOUT) -> dict[str, Any]:
    """The checkout's commit and dirty flag; "unknown" where they cannot be determined.

    ``OVERLEARNING_GIT_COMMIT`` / ``OVERLEARNING_GIT_DIRTY`` (set by whoever launched the
    job on the host) win: inside a container the checkout may be visible but git missing.
    """
    env_commit = os.environ.get("OVERLEARNING_GIT_COMMIT")
    if env_commit:
        dirty_env = os.environ.get("OVERLEARNING_GIT_DIRTY", "unknown").lower()
        dirty: bool | str = {"1": True, "true": True, "0": False, "false": False}.get(
            dirty_env, "unknown"
        )
        return {"commit": env_commit, "dirty": dirty}
    commit = _run_git(["rev-parse", "HEAD"], checkout)
    if commit is None:
        commit = _commit_from_git_dir(checkout)
        return {"commit": commit or "unknown", "dirty": "unknown"}
    # Untracked files count (a new script changes what runs); ignored outputs do not.
    status = _run_git(["status", "--porcelain"], checkout)
    return {"commit": commit, "dirty": "unknown" if status is None else bool(status)}


@lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    """``sha256:<hex>`` of a file, streamed (images are several GB)."""
    return "sha256:" + sha256_file(path)


def _image_digest(image: str) -> str:
    """The SIF's sha256, from ``<image>.sha256`` when that is at least as new as the image.

    containers/build.sh writes the sidecar; for images Snakemake pulled itself, the first
    job hashes the file and leaves the sidecar for the others (hashing a multi-GB image in
    every job would cost minutes). A sidecar older than the image belongs to a replaced
    image and is ignored.
    """
    path, sidecar = Path(image), Path(image + ".sha256")
    try:
        if not path.is_file():
            return "unknown"
        if sidecar.is_file() and sidecar.stat().st_mtime >= path.stat().st_mtime:
            value = sidecar.read_text().split()[0]
            return value if value.startswith("sha256:") else "sha256:" + value
        digest = file_sha256(image)
    except (OSError, IndexError):
        return "unknown"
    try:  # best effort: a read-only image directory just means hashing again next time
        tmp = sidecar.with_name(f".{sidecar.name}.tmp{os.getpid()}")
        tmp.write_text(f"{digest[len('sha256:'):]}  {path.name}\n")
        os.replace(tmp, sidecar)
    except OSError:
        pass
    return digest


def container_state() -> dict[str, Any]:
    """The image this process runs in, or image "none" outside a container."""
    image = next((os.environ[v] for v in _CONTAINER_VARS if os.environ.get(v)), None)
    if image is None:
        return {"image": "none", "digest": "none"}
    state: dict[str, Any] = {"image": image, "digest": _image_digest(image)}
    try:
        labels = json.loads(_LABELS_FILE.read_text())
        state["labels"] = {k: v for k, v in labels.items() if k.startswith("org.overlearning.")}
    except (OSError, ValueError):
        pass
    return state


def runtime_state() -> dict[str, Any]:
    """Python, torch and CUDA versions and the GPU the process sees."""
    state: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": "none", "torch_cuda": "none", "cudnn": "none",
        "cuda_available": False, "gpu": "none", "gpu_count": 0,
    }
    try:
        import torch  # heavy: only when a record is written
    except ImportError:
        return state
    state["torch"] = torch.__version__
    state["torch_cuda"] = torch.version.cuda or "none"
    if torch.cuda.is_available():
        state["cuda_available"] = True
        state["gpu_count"] = torch.cuda.device_count()
        state["gpu"] = torch.cuda.get_device_name(0)
        cudnn = torch.backends.cudnn.version()
        state["cudnn"] = str(cudnn) if cudnn else "none"
    return state


def host_state() -> dict[str, Any]:
    """The machine and, under SLURM, the job that produced the result."""
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_partition": os.environ.get("SLURM_JOB_PARTITION"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def configured_hash(config: Mapping[str, Any] | None = None) -> str:
    """The hash of ``config`` when given, else the one the workflow exported, else "unknown"."""
    if config is not None:
        return config_hash(config)
    return os.environ.get(CONFIG_HASH_ENV) or "unknown"


def provenance_record(config: Mapping[str, Any] | None = None,
                      extra: Mapping[str, Any] | None = None) -> dict:
    """Everything :func:`write_provenance` writes, as a dict.

    Without ``config`` the hash comes from the environment (:data:`CONFIG_HASH_ENV`).
    """
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "git": git_state(),
        "config_sha256": configured_hash(config),
        "container": container_state(),
        "runtime": runtime_state(),
        "host": host_state(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else [],
    }
    if extra:
        record["extra"] = dict(extra)
    return record


def write_provenance(target: Path, config: Mapping[str, Any] | None = None,
                     extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``<target without suffix>.provenance.json`` atomically and return its path."""
    path = provenance_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(provenance_record(config, extra), indent=2, sort_keys=True, default=str)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

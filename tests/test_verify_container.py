"""Lock files, the container definition, and the image-versus-lock check."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.workflow.container_check import (
    compare,
    def_base_image,
    parse_pins,
    read_lock,
    verify,
)
from tests.conftest import REPO

CPU_LOCK = REPO / "envs" / "cpu.lock.txt"
GPU_LOCK = REPO / "envs" / "gpu.lock.txt"
DEF = REPO / "containers" / "overlearning-gpu.def"
SCRIPT = REPO / "scripts" / "verify_container.py"


def test_gpu_lock_is_the_cpu_lock_with_gpu_faiss():
    cpu, gpu = read_lock(CPU_LOCK), read_lock(GPU_LOCK)
    only_cpu = {k: v for k, v in cpu.items() if gpu.get(k) != v}
    only_gpu = {k: v for k, v in gpu.items() if cpu.get(k) != v}
    assert only_cpu == {"faiss-cpu": "1.15.1"}
    # faiss-gpu of the same release, plus the CUDA 12 runtime it links against.
    assert only_gpu == {"faiss-gpu": "1.15.1", "nvidia-cublas-cu12": "12.9.3.13",
                        "nvidia-cuda-nvrtc-cu12": "12.9.86",
                        "nvidia-cuda-runtime-cu12": "12.9.79",
                        "nvidia-curand-cu12": "10.3.10.19"}


def test_definition_pins_base_image_by_digest_and_installs_the_gpu_lock():
    base = def_base_image(DEF)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-[a-z-]+-ubuntu\d+\.\d+@sha256:[0-9a-f]{64}", base)
    text = DEF.read_text()
    # The label that verify compares with From: is the same string.
    assert f"org.overlearning.base-image {base}" in text
    assert "envs/gpu.lock.txt /opt/overlearning/gpu.lock.txt" in text
    assert "--no-deps" in text and "-r /opt/overlearning/gpu.lock.txt" in text
    # The Python the lock files were made with (and the one running these tests).
    assert "uv python install 3.11.7" in text


def test_parse_pins_normalises_names_and_rejects_junk():
    pins = parse_pins(["# comment", "", "PyYAML==6.0.3", "typing_extensions==4.16.0  # why"],
                      "x")
    assert pins == {"pyyaml": "6.0.3", "typing-extensions": "4.16.0"}
    with pytest.raises(WorkflowInputError, match="line 1"):
        parse_pins(["torch>=2"], "lock.txt")
    with pytest.raises(WorkflowInputError, match="pinned twice"):
        parse_pins(["a==1", "A==2"], "lock.txt")


def test_compare_reports_every_kind_of_difference():
    lock = {"torch": "2.14.1", "numpy": "2.4.6", "faiss-gpu": "1.15.1"}
    installed = {"torch": "2.14.1", "NumPy": "2.4.5", "faiss-cpu": "1.15.1", "pip": "25.0"}
    diff = compare(lock, installed)
    assert not diff.ok
    assert diff.missing == {"faiss-gpu": "1.15.1"}
    assert diff.extra == {"faiss-cpu": "1.15.1"}          # pip is ignored
    assert diff.mismatched == {"numpy": ("2.4.6", "2.4.5")}
    assert compare(lock, dict(lock, pip="1")).ok


def test_local_environment_matches_the_cpu_lock():
    """The project's own .venv is made from envs/cpu.lock.txt (make env)."""
    result = verify(CPU_LOCK, python=sys.executable)
    assert result["ok"], result["packages"]
    assert result["packages_checked"] == len(read_lock(CPU_LOCK))


def test_script_reports_a_difference_and_fails(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(CPU_LOCK.read_text().replace("torch==2.14.1", "torch==2.0.0"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--python", sys.executable,
                           "--lock", str(lock), "--report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 1, proc.stderr
    assert "version     torch: lock 2.0.0, installed 2.14.1" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["packages"]["mismatched"] == {"torch": {"lock": "2.0.0", "installed": "2.14.1"}}
    assert report["ok"] is False


@pytest.fixture()
def fake_image(tmp_path):
    """A file standing for a SIF, and an `apptainer` that runs `exec` with this Python.

    No container runtime exists on the test machine; this stands in for `apptainer exec
    <image> CMD...` so the image branch (digest, labels, freeze) runs end to end.
    """
    image = tmp_path / "image.sif"
    image.write_bytes(b"SIF bytes")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"org.overlearning.base-image": def_base_image(DEF)}))
    runner = tmp_path / "apptainer"
    runner.write_text(
        "#!/bin/sh\n"
        '[ "$1" = exec ] || exit 2\n'
        "shift; [ \"$1\" = --cleanenv ] && shift; shift\n"
        f'if [ "$1" = cat ]; then exec cat {labels}; fi\n'
        f'if [ "$1" = python ]; then shift; exec {sys.executable} "$@"; fi\n'
        'exec "$@"\n'
    )
    runner.chmod(0o755)
    return image, runner


def test_image_digest_labels_and_packages(fake_image):
    image, runner = fake_image
    digest = "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    Path(str(image) + ".sha256").write_text(f"{digest[7:]}  image.sif\n")
    result = verify(CPU_LOCK, image=str(image), definition=DEF, apptainer=str(runner))
    assert result["digest"] == digest == result["recorded_digest"]
    assert result["base_image"]["matches"] is True
    assert result["ok"] is True
    # An image that is not the one built (its bytes changed): the digest check fails.
    image.write_bytes(b"other SIF bytes")
    result = verify(CPU_LOCK, image=str(image), definition=DEF, apptainer=str(runner))
    assert result["ok"] is False and result["digest"] != result["recorded_digest"]

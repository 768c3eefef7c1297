"""The device guard (overlearning/core/device.py): cuda or a one-line stop, cpu on purpose.

The decision is tested with the facts of machines this test does not run on (a node
without a driver, an H100, a V100 too old for the CUDA 13 build, a T4 without bf16); the
refusal is also tested for real on this machine when it has no GPU, through the scripts a
GPU rule runs, and the success path for real where a GPU is present.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from overlearning.core.device import (
    GPU,
    DeviceFacts,
    DeviceUnavailable,
    arch_supports,
    decide_bf16,
    decide_device,
    driver_version,
    gather_facts,
    require_amp,
    require_device,
)
from tests.conftest import REPO

# The archs of the image's torch 2.14.1 CUDA 13.0 build (torch.cuda.get_arch_list()).
CU130 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")
NO_DRIVER = DeviceFacts(host="gpu-node-7", visible_devices="0", driver="none",
                        torch_cuda="13.0", arch_list=CU130,
                        problem="Found no NVIDIA driver on your system")
H100 = DeviceFacts(host="gpu-node-1", visible_devices="2", driver="580.65.06",
                   torch_cuda="13.0", arch_list=CU130, gpus=(GPU("NVIDIA H100", (9, 0)),))
V100 = DeviceFacts(host="old-node", visible_devices="0", driver="580.65.06",
                   torch_cuda="13.0", arch_list=CU130, gpus=(GPU("Tesla V100", (7, 0)),))
T4 = DeviceFacts(host="t4-node", visible_devices="0", driver="580.65.06",
                 torch_cuda="13.0", arch_list=CU130, gpus=(GPU("Tesla T4", (7, 5)),))
NO_CUDA_HERE = not torch.cuda.is_available()


def test_refusal_is_one_line_naming_every_fact() -> None:
    with pytest.raises(DeviceUnavailable) as caught:
        decide_device("cuda", "train", NO_DRIVER)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("compute.device: rule train asked for cuda")
    for fact in ("host gpu-node-7", "CUDA_VISIBLE_DEVICES=0", "NVIDIA driver none",
                 "torch CUDA build 13.0", "sm_75,sm_80,sm_86,sm_90,sm_100,sm_120",
                 "Found no NVIDIA driver on your system", "compute.device: cpu"):
        assert fact in message, fact


def test_cpu_only_when_asked_for() -> None:
    assert decide_device("cpu", "embed", H100) == "cpu"
    assert decide_device("cpu", "embed", NO_DRIVER) == "cpu"
    assert decide_device("cuda", "embed", H100) == "cuda"
    with pytest.raises(DeviceUnavailable, match="must be one of cuda, cpu, not 'auto'"):
        decide_device("auto", "embed", H100)


def test_gpu_older_than_the_build_and_too_few_gpus_are_refused() -> None:
    with pytest.raises(DeviceUnavailable, match=r"GPU 0 Tesla V100 \(sm_70\) is older than"):
        decide_device("cuda", "detect_shard", V100)
    assert decide_device("cuda", "detect_shard", T4) == "cuda"  # sm_75 is in the build
    with pytest.raises(DeviceUnavailable, match="1 CUDA device.s. visible, 2 needed"):
        decide_device("cuda", "train", H100, gpus=2)


@pytest.mark.parametrize(("archs", "capability", "runs"), [
    (CU130, (8, 9), True),          # Ada runs the sm_86 cubin (same major, newer minor)
    (CU130, (10, 3), True),         # B300 runs the sm_100 cubin
    (CU130, (7, 0), False),         # Volta: nothing of major 7 at or below 7.0
    (CU130, (6, 0), False),         # Pascal
    (("sm_90a",), (9, 0), True),    # arch-specific cubin: that GPU only
    (("sm_90a",), (10, 0), False),
    (("sm_80", "compute_80"), (12, 0), True),  # PTX is compiled for newer GPUs
    (("sm_86",), (8, 0), False),    # an older minor does not run a newer cubin
])
def test_arch_support(archs: tuple[str, ...], capability: tuple[int, int], runs: bool) -> None:
    assert arch_supports(archs, capability) is runs


def test_bf16_only_where_the_device_has_it(caplog: pytest.LogCaptureFixture) -> None:
    assert decide_bf16("bf16", "refuse", "cuda", "train", H100) == "bf16"
    assert decide_bf16("none", "refuse", "cpu", "train", None) == "none"
    with pytest.raises(DeviceUnavailable) as caught:
        decide_bf16("bf16", "refuse", "cuda", "train", T4)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("training.amp: rule train asked for bf16")
    assert "GPU 0 Tesla T4 (sm_75) has no bf16" in message and "host t4-node" in message
    with pytest.raises(DeviceUnavailable, match="runs on cpu"):
        decide_bf16("bf16", "refuse", "cpu", "tune", None)
    with caplog.at_level(logging.WARNING, logger="overlearning.core.device"):
        assert decide_bf16("bf16", "none", "cuda", "tune", T4) == "none"
    assert "runs in float32 as training.amp_fallback: none says" in caplog.text
    with pytest.raises(DeviceUnavailable, match="training.amp_fallback: must be one of"):
        decide_bf16("bf16", "fp16", "cuda", "tune", H100)


def test_driver_version_from_proc_and_none_without(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  "
                    "Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Jul 22 2025\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
    assert driver_version(proc) == "580.65.06"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12\n")
    assert driver_version(proc) == "535.183.01"
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi either
    assert driver_version(tmp_path / "missing") == "none"


@pytest.mark.skipif(not NO_CUDA_HERE, reason="this machine has a usable GPU")
def test_real_refusal_on_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    facts = gather_facts()
    assert facts.problem and not facts.gpus
    assert facts.torch_cuda == (torch.version.cuda or "none")
    with pytest.raises(DeviceUnavailable, match="CUDA_VISIBLE_DEVICES=0") as caught:
        require_device("cuda", rule="embed", facts=facts)
    assert "\n" not in str(caught.value)
    assert require_device("cpu", rule="embed") == torch.device("cpu")


@pytest.mark.skipif(NO_CUDA_HERE, reason="needs a CUDA GPU")
def test_real_gpu_is_accepted() -> None:
    facts = gather_facts()
    assert facts.gpus and not facts.problem
    assert require_device("cuda", rule="embed", facts=facts) == torch.device("cuda")
    native = all(gpu.capability >= (8, 0) for gpu in facts.gpus)
    assert require_amp("bf16", "none", "cuda", rule="train", facts=facts) == (
        "bf16" if native else "none")


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))


@pytest.mark.skipif(not NO_CUDA_HERE, reason="this machine has a usable GPU")
def test_gpu_scripts_stop_with_the_one_line(tmp_path: Path) -> None:
    """What a GPU rule's job prints where CUDA is not usable: one line, exit 1, no output."""
    out = tmp_path / "q.npz"
    embed = _script("embed.py", "--device", "cuda", "--rule", "embed_anonymised",
                    "--model-dir", str(tmp_path / "missing"), "--trunk", "{}",
                    "--embedding-dim", "8", "--set", str(out), "pack", str(tmp_path), "-", "-",
                    "--batch-size", "2")
    assert embed.returncode == 1 and embed.stdout == ""
    lines = embed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "compute.device: rule embed_anonymised asked for cuda"), embed.stderr
    assert not out.exists()
    common = ["--setting", "ms", "--params", json.dumps({"trunk": "timm_clip"}),
              "--trunk", "{}", "--cache", str(tmp_path), "--train-dir", str(tmp_path),
              "--valid-dir", str(tmp_path), "--person-category", "1", "--seed", "1",
              "--out", str(tmp_path / "model"), "--checkpoints", str(tmp_path / "ck")]
    train = _script("train.py", "--device", "cuda", "--rule", "train", "--processes", "2",
                    "--training", "{}", *common)
    assert train.returncode == 1 and len(train.stderr.splitlines()) == 1, train.stderr
    assert "rule train asked for cuda (2 GPU)" in train.stderr
    # Explicit CPU with bf16 asked for and no fallback chosen: the bf16 check refuses.
    bf16 = _script("train.py", "--device", "cpu", "--rule", "train", "--training",
                   json.dumps({"amp": "bf16", "amp_fallback": "refuse"}), *common)
    assert bf16.returncode == 1 and len(bf16.stderr.splitlines()) == 1, bf16.stderr
    assert bf16.stderr.startswith("training.amp: rule train asked for bf16 but the job runs on cpu")
    assert not (tmp_path / "model").exists()

"""Where a job runs: the CUDA device its rule asked for, or a one-line stop (issue 21).

A GPU rule's script calls :func:`require_device` first thing, with ``compute.device`` of
the config. ``cuda`` is a promise that the job has a usable GPU: without one it stops
within seconds naming the host, the visible devices, the NVIDIA driver, torch's CUDA build
and the GPU generations that build supports, instead of grinding on the node's CPUs until
the job's time limit. ``cpu`` is the only way onto the CPU (the demo and the rehearsal say
so in their configs); nothing falls back to it silently.

The decision is a pure function of :class:`DeviceFacts` (``decide_device``,
``decide_bf16``), so that tests exercise the refusal and the success paths with facts of a
machine they do not run on; ``gather_facts`` reads the facts of this one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from overlearning.core.errors import WorkflowInputError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEVICES = ("cuda", "cpu")
AMP_FALLBACKS = ("refuse", "none")
DEVICE_KEY = "compute.device"
AMP_KEY = "training.amp"
NVIDIA_VERSION_FILE = Path("/proc/driver/nvidia/version")
# bf16 tensor cores arrived with Ampere (compute capability 8.0); torch emulates bf16
# autocast on older GPUs at a fraction of the speed, which is not what a config asking for
# bf16 means.
BF16_MIN_CAPABILITY = (8, 0)


class DeviceUnavailable(WorkflowInputError):
    """The configured device (or precision) cannot be used on this machine."""


@dataclass(frozen=True)
class GPU:
    name: str
    capability: tuple[int, int]


@dataclass(frozen=True)
class DeviceFacts:
    """What decides whether a job can run on CUDA here (all of it goes into the refusal)."""

    host: str
    visible_devices: str            # CUDA_VISIBLE_DEVICES as the job sees it, or "unset"
    driver: str                     # the NVIDIA kernel driver version, or "none"
    torch_cuda: str                 # torch.version.cuda: the CUDA the build targets, or "none"
    arch_list: tuple[str, ...]      # torch.cuda.get_arch_list(): sm_XY / compute_XY
    gpus: tuple[GPU, ...] = ()      # the devices torch can see (empty when CUDA is unusable)
    problem: str = ""               # why torch could not use CUDA ("" when it could)

    def summary(self) -> str:
        """The facts as one line: host, visible devices, driver, build, supported GPUs."""
        arch = ",".join(self.arch_list) or "none"
        return (f"host {self.host}, CUDA_VISIBLE_DEVICES={self.visible_devices}, "
                f"NVIDIA driver {self.driver}, torch CUDA build {self.torch_cuda} "
                f"(GPU archs {arch})")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def driver_version(proc_file: Path = NVIDIA_VERSION_FILE) -> str:
    """The NVIDIA kernel driver's version, from /proc or nvidia-smi; "none" without one."""
    try:
        found = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?(\d+(?:\.\d+)+)",
                          proc_file.read_text(errors="replace"))
        if found:
            return found.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=15,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return "none"
        versions = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
        if out.returncode == 0 and versions:
            return ",".join(versions)
    return "none"


def gather_facts() -> DeviceFacts:
    """This machine's facts; a tiny kernel runs on this process's GPU (LOCAL_RANK's under
    torchrun, else the first) to prove it works; the others are not touched, so that no
    process holds a CUDA context on another's GPU."""
    import torch

    base = dict(host=socket.gethostname(),
                visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
                driver=driver_version(), torch_cuda=torch.version.cuda or "none",
                arch_list=tuple(torch.cuda.get_arch_list()))
    # torch explains an unusable CUDA (driver too old, no device, a GPU older than the
    # build) in warnings: keep them for the one line instead of letting them print
    # multi-line warnings into the job's log.
    gpus: list[GPU] = []
    problem = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if torch.cuda.is_available():
                for index in range(torch.cuda.device_count()):
                    gpus.append(GPU(torch.cuda.get_device_name(index),
                                    tuple(torch.cuda.get_device_capability(index))))
                mine = min(int(os.environ.get("LOCAL_RANK", "0")), len(gpus) - 1)
                # "no kernel image is available" (a GPU older than the build) shows here.
                torch.ones(1, device=f"cuda:{mine}").add_(1).item()
            else:
                problem = "; ".join(_one_line(w.message) for w in caught) or (
                    "no NVIDIA driver is loaded here" if base["driver"] == "none"
                    else "torch finds no CUDA device")
        except RuntimeError as error:  # a broken driver, a missing kernel image
            problem = _one_line(error).split(". ")[0]
    return DeviceFacts(**base, gpus=tuple(gpus), problem=problem)


def arch_supports(arch_list: tuple[str, ...], capability: tuple[int, int]) -> bool:
    """Whether a build with these archs runs on a GPU of this compute capability: a cubin
    (sm_XY) runs on the same major version with an equal or higher minor, PTX (compute_XY)
    is compiled for any equal or newer GPU."""
    major, minor = capability
    for arch in arch_list:
        found = re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", arch)
        if not found:
            continue
        kind, built = found.group(1), (int(found.group(2)), int(found.group(3)))
        if found.group(4):  # sm_90a and the like: that exact GPU generation only
            if built == capability:
                return True
        elif kind == "sm" and built[0] == major and built[1] <= minor:
            return True
        elif kind == "compute" and built <= capability:
            return True
    return False


def decide_device(requested: str, rule: str, facts: DeviceFacts, gpus: int = 1) -> str:
    """"cuda" or "cpu" for a job of ``rule`` that asked for ``requested`` (compute.device),
    or :class:`DeviceUnavailable` with one line saying why and what this machine has."""
    if requested == "cpu":
        return "cpu"
    if requested != "cuda":
        raise DeviceUnavailable(DEVICE_KEY, f"must be one of {', '.join(DEVICES)}, "
                                            f"not {requested!r} (rule {rule})")
    problem = facts.problem
    if not problem and len(facts.gpus) < gpus:
        problem = f"{len(facts.gpus)} CUDA device(s) visible, {gpus} needed"
    if not problem:
        unsupported = [f"GPU {i} {gpu.name} (sm_{gpu.capability[0]}{gpu.capability[1]})"
                       for i, gpu in enumerate(facts.gpus)
                       if not arch_supports(facts.arch_list, gpu.capability)]
        if unsupported:
            problem = f"{', '.join(unsupported)} is older than this torch build supports"
    if problem:
        raise DeviceUnavailable(
            DEVICE_KEY,
            f"rule {rule} asked for cuda ({gpus} GPU) but CUDA is not usable: {problem}; "
            f"{facts.summary()}. Run where a supported GPU and driver are (docs/hpc.md), "
            f"or set compute.device: cpu to use the CPU on purpose")
    return "cuda"


def decide_bf16(amp: str, fallback: str, device: str, rule: str,
                facts: DeviceFacts | None) -> str:
    """The autocast a job runs with: ``amp`` ("bf16" or "none") where the device supports
    it; else the refusal (``fallback`` "refuse") or, with ``fallback`` "none", float32 and
    a warning in the job's log (``training.amp_fallback``)."""
    if amp not in ("bf16", "none"):
        raise DeviceUnavailable(AMP_KEY, f"must be bf16 or none, not {amp!r} (rule {rule})")
    if fallback not in AMP_FALLBACKS:
        raise DeviceUnavailable("training.amp_fallback",
                                f"must be one of {', '.join(AMP_FALLBACKS)}, not {fallback!r}")
    if amp == "none":
        return "none"
    where = ""
    if device == "cuda" and facts is not None:
        lacking = [f"GPU {i} {gpu.name} (sm_{gpu.capability[0]}{gpu.capability[1]})"
                   for i, gpu in enumerate(facts.gpus) if gpu.capability < BF16_MIN_CAPABILITY]
        if facts.gpus and not lacking:
            return "bf16"
        why = (f"{', '.join(lacking)} has no bf16 tensor cores (compute capability 8.0 "
               "or newer needed)") if lacking else "no CUDA device is usable"
        where = f"; {facts.summary()}"
    else:
        why = f"the job runs on {device} (bf16 autocast is for CUDA devices only)"
    if fallback == "none":
        log.warning("%s: bf16 asked for but %s; rule %s runs in float32 as "
                    "training.amp_fallback: none says", AMP_KEY, why, rule)
        return "none"
    raise DeviceUnavailable(
        AMP_KEY, f"rule {rule} asked for bf16 but {why}{where}. Set training.amp: none, or "
                 "training.amp_fallback: none to fall back to float32 with a warning")


_FACTS: DeviceFacts | None = None


def device_facts() -> DeviceFacts:
    """This machine's facts, gathered once per process."""
    global _FACTS
    if _FACTS is None:
        _FACTS = gather_facts()
    return _FACTS


def require_device(requested: str, *, rule: str, gpus: int = 1,
                   facts: DeviceFacts | None = None) -> torch.device:
    """The torch device a job of ``rule`` runs on: CUDA when ``requested`` is "cuda" and a
    usable GPU is here (:class:`DeviceUnavailable` otherwise), the CPU only when
    ``requested`` is "cpu". ``facts`` default to this machine's."""
    import torch

    if requested == "cpu":  # no CUDA probe: an explicit CPU job never touches the driver
        return torch.device("cpu")
    return torch.device(decide_device(requested, rule, facts or device_facts(), gpus))


def require_amp(amp: str, fallback: str, device: torch.device | str, *, rule: str,
                facts: DeviceFacts | None = None) -> str:
    """The bf16 capability check of a training job: "bf16" or "none" (see decide_bf16)."""
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    if amp == "bf16" and kind == "cuda" and facts is None:
        facts = device_facts()
    return decide_bf16(amp, fallback, kind, rule, facts)

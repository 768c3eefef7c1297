"""bench/gpu_check.sh end to end with tiny sizes on this machine's device: it must run,
write one JSON with every field the full GPU run writes, and the numbers must be sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

from devices import PEAKS, peak_flops  # noqa: E402
from gpu_check import FIELDS, TARGETS  # noqa: E402


def test_tiny_gpu_check_writes_every_field(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    env = {**os.environ, "GPU_CHECK_TINY": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([str(REPO / "bench" / "gpu_check.sh"), str(out)], check=True, env=env,
                   capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert sorted(result) == FIELDS[""]
    for part, keys in FIELDS.items():
        if part:
            assert sorted(result[part]) == sorted(keys), part
    assert result["tiny"] is True and result["targets"] == TARGETS
    train = result["train"]
    assert train["timed_steps"] == 2 and train["images_per_s"] > 0
    assert train["flops_per_step"] > 0  # counted by torch's flop counter
    assert 0 <= train["data_wait_fraction"] < 1
    for part in ("embeddings", "grounding_dino", "sam"):
        assert result[part]["images_per_s"] > 0
    assert result["embeddings"]["images"] == 16
    assert result["ranking"]["device_s"] > 0 and result["ranking"]["cpu_s"] > 0
    if result["device_type"] == "cpu":  # no peak for a CPU: no MFU, no target met by it
        assert train["mfu"] is None and result["meets"]["train_mfu"] is False
        assert result["meets"]["ranking_gpu_s"] is False  # tiny sizes never count


def test_peak_table_by_device_name() -> None:
    assert peak_flops("NVIDIA H200") == peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L4") == 121e12 and peak_flops("NVIDIA L40S") == 362e12
    assert peak_flops("cpu") is None
    assert peak_flops("NVIDIA H100 80GB HBM3", bf16=False) == 494.7e12
    assert all(bf16 >= tf32 > 1e13 for _, bf16, tf32 in PEAKS)

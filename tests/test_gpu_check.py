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

from gpu_check import BF16_PEAKS, FIELDS, TARGETS, bf16_peak  # noqa: E402


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
    assert bf16_peak("NVIDIA H200") == bf16_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bf16_peak("NVIDIA H100 PCIe") == 756.0e12
    assert bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert bf16_peak("NVIDIA L4") == 121e12 and bf16_peak("NVIDIA L40S") == 362e12
    assert bf16_peak("cpu") is None
    assert all(peak > 1e13 for _, peak in BF16_PEAKS)

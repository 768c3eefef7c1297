"""Dense tensor-core peaks by device name, for model FLOP utilisation (MFU).

Vendors' data sheets, SXM parts where both exist, no sparsity. Not a benchmark itself (the
Makefile runs bench/bench_*.py only).
"""

from __future__ import annotations

import re

# (name pattern, bf16 FLOP/s, TF32 FLOP/s), most specific first.
PEAKS = [
    (r"GH200", 989.4e12, 494.7e12), (r"H200", 989.4e12, 494.7e12),
    (r"H100.*PCIe", 756.0e12, 378.0e12), (r"H100", 989.4e12, 494.7e12),
    (r"H800", 989.4e12, 494.7e12), (r"B200", 2250e12, 1100e12),
    (r"A100", 312e12, 156e12), (r"A800", 312e12, 156e12), (r"L40S", 362e12, 183e12),
    (r"L40", 181e12, 90.5e12), (r"L4\b", 121e12, 60e12), (r"A40", 149.7e12, 74.8e12),
    (r"A10\b", 125e12, 62.5e12), (r"V100", 125e12, 125e12), (r"RTX 4090", 165e12, 82.6e12),
    (r"RTX 3090", 71e12, 35.6e12),
]


def peak_flops(name: str, bf16: bool = True) -> float | None:
    """The device's dense peak in FLOP/s (bf16, or TF32 for fp32 matmuls); None if unknown."""
    for pattern, bf16_peak, tf32_peak in PEAKS:
        if re.search(pattern, name):
            return bf16_peak if bf16 else tf32_peak
    return None

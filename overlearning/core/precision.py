"""Numeric precision of inference on an accelerator: bf16 autocast, TF32 or plain float32.

Config values: ``bf16`` (matmuls and convolutions under ``torch.autocast`` in bfloat16),
``tf32`` (float32 tensors, matmuls and convolutions on TF32 tensor cores) and ``fp32``
(strict float32). A CPU always runs ``fp32``: the demo's outputs, and every result made
without a GPU, do not depend on the setting (``precision_for``). ``precision_context``
applies a value literally, on any device, so that tests can check bf16 against fp32 on a CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

Precision = Literal["bf16", "tf32", "fp32"]
PRECISIONS = ("bf16", "tf32", "fp32")


def device_type(device: Any) -> str:
    """'cuda', 'cpu', ... for a torch.device or a string such as 'cuda:0'."""
    return getattr(device, "type", None) or str(device).split(":")[0]


def precision_for(device: Any, configured: str) -> Precision:
    """The precision a job runs at: the configured one on CUDA, fp32 anywhere else."""
    if configured not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {configured!r}")
    return configured if device_type(device) == "cuda" else "fp32"  # type: ignore[return-value]


@contextlib.contextmanager
def precision_context(device: Any, precision: str) -> Iterator[None]:
    """Run the block at ``precision`` on ``device``; TF32 switches are restored after."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    kind = device_type(device)
    if precision == "bf16":
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            yield
        return
    if kind != "cuda":
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before

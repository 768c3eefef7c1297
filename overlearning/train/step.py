"""The training step's settings: TF32, fused AdamW, bf16 autocast, optional torch.compile.

On CUDA, fp32 matmuls and convolutions may use TF32 (the bf16 autocast covers most of the
model; TF32 speeds up what stays fp32: the loss and the embedder's gradients), AdamW runs
fused (one kernel for all parameters instead of a loop of per-tensor kernels), and
``training.compile: true`` compiles the network with torch.compile. On the CPU none of
this applies: the CPU path stays what it was, bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def configure_backends(cuda: bool) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on CUDA (deterministic; no effect on CPU)."""
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_optimizers(model: nn.Module, params: Mapping[str, Any], weight_decay: float,
                    cuda: bool) -> dict[str, torch.optim.Optimizer]:
    """AdamW for the trunk and for the embedder (their own learning rates); fused on CUDA."""
    fused = {"fused": True} if cuda else {}
    return {
        "trunk": torch.optim.AdamW(model.trunk.parameters(), lr=float(params["lr"]),
                                   weight_decay=weight_decay, **fused),
        "embedder": torch.optim.AdamW(model.embedder.parameters(), lr=float(params["lr_embed"]),
                                      weight_decay=weight_decay, **fused),
    }


def maybe_compile(network: nn.Module, training: Mapping[str, Any]) -> nn.Module:
    """``torch.compile(network)`` when ``training.compile`` is true, else the network."""
    if training.get("compile", False):
        return torch.compile(network)
    return network

"""Run time of a GPU job whose work grows with its epochs, estimated before any GPU ran it.

Minutes = epochs x images per epoch x (1 + validation share) / images per second of the
GPU generation, times a safety margin, plus a fixed start-up allowance (container, data
and model loading), rounded up to 10 minutes. The images per second are *estimates*
(config.yaml ``runtime_estimate``) until bench/bench_training.py has measured the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

STARTUP_MIN = 10


def epoch_runtime_minutes(epochs: int, estimate: Mapping[str, Any]) -> int:
    """Minutes for ``epochs`` training epochs on ``estimate["gpu"]`` (config runtime_estimate)."""
    gpu = estimate["gpu"]
    rates = estimate["images_per_s"]
    if gpu not in rates:
        raise KeyError(f"runtime_estimate.gpu: no images_per_s for {gpu!r} "
                       f"(known: {sorted(rates)})")
    images = epochs * estimate["train_images_per_epoch"] * (1 + estimate["validation_share"])
    minutes = images / rates[gpu] / 60 * estimate["margin"] + STARTUP_MIN
    return int(math.ceil(minutes / 10) * 10)


def trials_per_worker(trials: int, workers: int) -> int:
    """The most trials one tuning worker runs when the workers share them evenly."""
    return math.ceil(trials / workers)

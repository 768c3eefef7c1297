"""GPU run-time estimates from epochs and throughput (overlearning/workflow/estimates.py)."""

from __future__ import annotations

import pytest

from overlearning.workflow.estimates import epoch_runtime_minutes, trials_per_worker

ESTIMATE = {"gpu": "a100", "train_images_per_epoch": 60000, "validation_share": 0.25,
            "margin": 1.2, "images_per_s": {"a100": 500, "h100": 1500}}


def test_minutes_follow_epochs_images_and_throughput() -> None:
    # 10 x 60000 x 1.25 = 750000 images; / 500 per s = 1500 s = 25 min; x 1.2 = 30; + 10 = 40.
    assert epoch_runtime_minutes(10, ESTIMATE) == 40
    # Three times the GPU speed: 25 / 3 x 1.2 = 10 min + 10 = 20.
    assert epoch_runtime_minutes(10, {**ESTIMATE, "gpu": "h100"}) == 20
    # Rounded up to ten minutes: 1 epoch = 3 min (incl. margin) + 10 = 13 -> 20.
    assert epoch_runtime_minutes(1, ESTIMATE) == 20


def test_unknown_gpu_generation_is_named() -> None:
    with pytest.raises(KeyError, match="v100"):
        epoch_runtime_minutes(1, {**ESTIMATE, "gpu": "v100"})


def test_trials_are_shared_evenly() -> None:
    assert trials_per_worker(50, 10) == 5
    assert trials_per_worker(50, 8) == 7
    assert trials_per_worker(3, 1) == 3

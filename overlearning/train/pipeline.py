"""The training input: which pipeline feeds the loop, and its DataLoader.

``training.augment``: ``cpu`` is the original pipeline (PIL decode and the model's timm
train transform in the loader workers, float32 batches); ``device`` decodes to uint8 on
the CPU and augments on the training device (overlearning.train.gpu_augment); ``auto``
(the default) is ``device`` on CUDA and ``cpu`` otherwise, so CPU runs (the demo) draw
exactly what they always drew.

The device pipeline keeps its loader workers alive across epochs (its randomness is a
per-sample seed, not the workers' RNG, so persistence cannot change a resumed run); the
CPU pipeline restarts them every epoch because the timm transform draws from the
workers' generators, which the checkpoint restores through the loader's generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from overlearning.data.crop_sets import Item
from overlearning.models.embedder import EmbeddingModel
from overlearning.train.gpu_augment import (
    DecodedCropDataset,
    PackedBatch,
    SeededSampler,
    augment,
    augment_spec,
    pack,
)
from overlearning.train.loader import CropDataset

AUGMENT_MODES = ("auto", "cpu", "device")


def augment_on_device(training: Mapping[str, Any], device: torch.device) -> bool:
    """Whether ``training.augment`` asks for the device pipeline on this device."""
    mode = training.get("augment", "auto")
    if mode not in AUGMENT_MODES:
        raise ValueError(f"training.augment must be one of {AUGMENT_MODES}, not {mode!r}")
    return mode == "device" or (mode == "auto" and device.type == "cuda")


@dataclass
class TrainInput:
    """The loader of one rank and how its batches become device tensors."""

    dataset: CropDataset | DecodedCropDataset
    loader: DataLoader
    to_device: Callable[[Any], tuple[torch.Tensor, torch.Tensor]]
    set_epoch: Callable[[int], None]
    seeded: bool = False  # draws from per-sample seeds only, never the global generators


def train_input(items: Sequence[Item], model: EmbeddingModel, training: Mapping[str, Any],
                sampler: Sampler[int], generator: torch.Generator, workers: int,
                device: torch.device, seed: int, rank: int = 0,
                world_size: int = 1) -> TrainInput:
    """The rank's training loader over ``items`` in ``sampler``'s order."""
    cuda = device.type == "cuda"
    local = int(training["batch_size"]) // world_size
    if not augment_on_device(training, device):
        dataset = CropDataset(items, model.train_transform)
        loader = DataLoader(dataset, batch_size=local, sampler=sampler, num_workers=workers,
                            pin_memory=cuda, drop_last=True, generator=generator,
                            prefetch_factor=4 if workers else None)

        def plain(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            images, labels = batch
            images = images.to(device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            return images, labels.to(device, non_blocking=True)

        return TrainInput(dataset, loader, plain, lambda epoch: None)

    spec = augment_spec(model.train_transform)
    seeded = SeededSampler(sampler, seed, int(training["batch_size"]), rank, world_size)
    decoded = DecodedCropDataset(items, spec)
    loader = DataLoader(decoded, batch_size=local, sampler=seeded, num_workers=workers,
                        collate_fn=pack, pin_memory=cuda, drop_last=True, generator=generator,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None)

    def augmented(batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(batch, spec, device, channels_last=cuda)

    return TrainInput(decoded, loader, augmented, seeded.set_epoch, seeded=True)

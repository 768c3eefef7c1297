"""Training augmentation on the device, in batches: timm's train transform without PIL.

The CPU path (``CropDataset`` + the model's ``train_transform``) decodes, random-resize-
crops (bicubic), colour-jitters and normalises every image with PIL and float32 on the CPU.
Here the CPU only decodes to uint8 (torchvision.io), draws the random parameters and cuts
the crop out of the decoded image (a slice); the packed uint8 crops travel to the device
in one pinned buffer, where each crop is resized (bicubic with antialiasing, PIL's
kernel) and the batch is flipped, jittered and normalised at once.

The parameters are those of the model's own train transform (``augment_spec`` reads them
from the timm / torchvision ``Compose``), and they are drawn as timm draws them: the crop
by ``RandomResizedCropAndInterpolation.get_params`` (10 attempts at an area fraction
uniform in ``scale`` and a log-uniform aspect ratio, else a centre crop of the clamped
ratio), the flip with probability ``p``, brightness, contrast and saturation factors
uniform in their ranges, applied in a random order (torchvision ``ColorJitter``).
Differences from the PIL pipeline (docs/training.md): intermediate results stay float
instead of being rounded to uint8 after the resize and after each jitter step, contrast
uses the exact grey mean instead of PIL's rounded one, and the JPEG decoder is
torchvision's libjpeg-turbo instead of Pillow's.

Randomness comes from a per-sample seed (``SeededSampler``): the global position of the
sample in the epoch's global batches, the epoch and the run's seed, never the worker's
RNG. So the augmented batches do not depend on the number of loader workers, on worker
persistence, nor on the number of processes, and a resumed run draws what an
uninterrupted one drew.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from overlearning.core.errors import WorkflowInputError
from overlearning.data.crop_sets import Item

# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma), as ColorJitter uses.
GREY = (0.2989, 0.587, 0.114)
# Per-sample parameter vector: crop top, left, height, width, flip, 3 factors, 3 orders.
PARAMS = 11


@dataclass(frozen=True)
class AugmentSpec:
    """The parameters of a train transform (see ``augment_spec``)."""

    size: tuple[int, int]                          # output (height, width)
    scale: tuple[float, float]                     # crop area fraction range
    ratio: tuple[float, float]                     # crop aspect ratio (w / h) range
    interpolation: str                             # "bicubic" | "bilinear"
    hflip: float                                   # flip probability
    brightness: tuple[float, float] | None
    contrast: tuple[float, float] | None
    saturation: tuple[float, float] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = (float(v) for v in value)
    return None if low == high == 1.0 else (low, high)


def augment_spec(transform: Any) -> AugmentSpec:
    """The parameters of a timm or torchvision train ``Compose`` this module can reproduce.

    Anything it does not know (random interpolation, hue jitter, auto-augment, random
    erasing, ...) stops with ValueError: silently training with other augmentations
    than the model's would change the study.
    """
    from torchvision import transforms as T

    found: dict[str, Any] = {"hflip": 0.0, "brightness": None, "contrast": None,
                             "saturation": None}
    for step in getattr(transform, "transforms", [transform]):
        kind = type(step).__name__
        if kind in ("RandomResizedCropAndInterpolation", "RandomResizedCrop"):
            interpolation = step.interpolation
            if isinstance(interpolation, list | tuple):
                raise ValueError(f"random interpolation is not supported ({step!r})")
            name = getattr(interpolation, "value", str(interpolation)).lower()
            if name not in ("bicubic", "bilinear"):
                raise ValueError(f"interpolation {name!r} is not supported")
            size = step.size if isinstance(step.size, list | tuple) else (step.size, step.size)
            found.update(size=(int(size[0]), int(size[-1])),
                         scale=tuple(float(s) for s in step.scale),
                         ratio=tuple(float(r) for r in step.ratio), interpolation=name)
        elif kind == "RandomHorizontalFlip":
            found["hflip"] = float(step.p)
        elif kind == "ColorJitter":
            if _pair(step.hue) not in (None, (0.0, 0.0)):
                raise ValueError("hue jitter is not supported")
            found.update(brightness=_pair(step.brightness), contrast=_pair(step.contrast),
                         saturation=_pair(step.saturation))
        elif kind == "Normalize":
            found.update(mean=tuple(float(m) for m in step.mean),
                         std=tuple(float(s) for s in step.std))
        elif kind in ("ToTensor", "MaybeToTensor", "PILToTensor", "MaybePILToTensor"):
            continue
        elif isinstance(step, T.Compose):
            raise ValueError("nested Compose is not supported")
        else:
            raise ValueError(f"train transform step {kind} is not supported on the device")
    missing = {"size", "mean"} - set(found)
    if missing:
        raise ValueError(f"train transform lacks a random resized crop or a Normalize ({transform!r})")
    return AugmentSpec(**found)


# ---------------------------------------------------------------------------- drawing


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop, drawn as timm's get_params."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
        target_area = (scale[0] + (scale[1] - scale[0]) * u[0]) * area
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def draw_params(spec: AugmentSpec, height: int, width: int,
                generator: torch.Generator) -> torch.Tensor:
    """One sample's parameters (float64, ``PARAMS`` values) for an image of that size."""
    top, left, h, w = crop_box(height, width, spec.scale, spec.ratio, generator)
    flip = float(torch.rand((), generator=generator, dtype=torch.float64) < spec.hflip)
    order = torch.randperm(3, generator=generator).tolist()
    factors = []
    for bounds in (spec.brightness, spec.contrast, spec.saturation):
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        factors.append(1.0 if bounds is None else bounds[0] + (bounds[1] - bounds[0]) * u)
    return torch.tensor([top, left, h, w, flip, *factors, *order], dtype=torch.float64)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The seed of the sample at ``position`` of the epoch's global order."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


class SeededSampler(Sampler[tuple[int, int]]):
    """(index, per-sample seed) pairs: the inner sampler's order with a seed for each.

    The seed depends on the sample's position in the global batches (this rank's slice
    placed where it sits among ``world_size`` ranks), the epoch (``set_epoch``) and the
    run's seed: W processes draw what one process draws for the same global batch.
    """

    def __init__(self, inner: Sampler[int], seed: int, batch_size: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.inner = inner
        self.seed = seed
        self.local = batch_size // world_size
        self.batch_size = batch_size
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for k, index in enumerate(self.inner):
            position = (k // self.local) * self.batch_size + self.rank * self.local + k % self.local
            yield index, sample_seed(self.seed, self.epoch, position)


# ---------------------------------------------------------------------------- CPU side


def decode_rgb(item: Item) -> torch.Tensor:
    """(3, H, W) uint8 of a crop's JPEG/PNG bytes; a missing or corrupt one stops naming it."""
    from torchvision.io import ImageReadMode, decode_image

    data = torch.frombuffer(bytearray(item.read_bytes()), dtype=torch.uint8)
    with warnings.catch_warnings():
        # torchvision 0.29 announces the move of its decoders to TorchCodec on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_image(data, mode=ImageReadMode.RGB)
        except RuntimeError as exc:
            raise WorkflowInputError(item.where, f"corrupt or unreadable image ({exc})") from None


class DecodedCropDataset(Dataset):
    """(uint8 crop, parameters, label) for (index, seed) pairs: the CPU half of the pipeline."""

    def __init__(self, items: Sequence[Item], spec: AugmentSpec) -> None:
        self.items = list(items)
        self.spec = spec
        self.labels = np.array([item.label for item in self.items], dtype=np.int64)
        self.is_person = np.array([item.is_person for item in self.items], dtype=bool)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, seed = key
        image = decode_rgb(self.items[index])
        generator = torch.Generator().manual_seed(seed)
        params = draw_params(self.spec, image.shape[1], image.shape[2], generator)
        top, left, h, w = (int(v) for v in params[:4].tolist())
        return image[:, top:top + h, left:left + w].contiguous(), params, int(self.labels[index])

    def person_labels(self) -> list[int]:
        return sorted({int(x) for x in self.labels[self.is_person]})


@dataclass
class PackedBatch:
    """A batch's crops in one flat uint8 buffer (one pinned transfer), with their shapes."""

    pixels: torch.Tensor      # (sum of 3*h*w,) uint8
    shapes: torch.Tensor      # (B, 2) int64 crop (h, w); stays on the CPU
    params: torch.Tensor      # (B, PARAMS) float64
    labels: torch.Tensor      # (B,) int64

    def pin_memory(self) -> PackedBatch:
        # DataLoader(pin_memory=True) calls this in its pinning thread.
        return PackedBatch(self.pixels.pin_memory(), self.shapes, self.params.pin_memory(),
                           self.labels.pin_memory())


def pack(samples: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> PackedBatch:
    """collate_fn of the device pipeline."""
    crops = [crop.reshape(-1) for crop, _, _ in samples]
    shapes = torch.tensor([list(crop.shape[1:]) for crop, _, _ in samples], dtype=torch.int64)
    return PackedBatch(torch.cat(crops), shapes, torch.stack([p for _, p, _ in samples]),
                       torch.tensor([label for _, _, label in samples], dtype=torch.int64))


# ---------------------------------------------------------------------------- device side


def _grey(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    return (GREY[0] * r + GREY[1] * g + GREY[2] * b).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * images + (1.0 - factor) * other).clamp_(0.0, 1.0)


def augment(batch: PackedBatch, spec: AugmentSpec, device: torch.device,
            channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised float32 images (B, 3, H, W), labels) on ``device`` from a packed batch."""
    pixels = batch.pixels.to(device, non_blocking=True)
    params = batch.params.to(device, dtype=torch.float32, non_blocking=True)
    labels = batch.labels.to(device, non_blocking=True)
    shapes = batch.shapes.tolist()  # CPU tensor: no device sync
    sizes = [3 * h * w for h, w in shapes]
    out = []
    for flat, (h, w) in zip(torch.split(pixels, sizes), shapes, strict=True):
        crop = flat.view(1, 3, h, w).float().div_(255.0)
        # antialias=True is PIL's bicubic (a = -0.5, support widened when shrinking).
        out.append(torch.nn.functional.interpolate(crop, size=spec.size, mode=spec.interpolation,
                                                   antialias=True, align_corners=False))
    images = torch.cat(out).clamp_(0.0, 1.0)
    flip = params[:, 4].view(-1, 1, 1, 1) > 0.5
    images = torch.where(flip, images.flip(-1), images)
    factors = params[:, 5:8].view(-1, 3, 1, 1, 1)
    order = params[:, 8:11]
    active = [k for k, bounds in enumerate((spec.brightness, spec.contrast, spec.saturation))
              if bounds is not None]
    for slot in range(3):
        for k in active:
            chosen = (order[:, slot] == k).view(-1, 1, 1, 1)
            factor = factors[:, k]
            if k == 0:
                changed = (images * factor).clamp_(0.0, 1.0)
            elif k == 1:
                changed = _blend(images, _grey(images).mean(dim=(1, 2, 3), keepdim=True), factor)
            else:
                changed = _blend(images, _grey(images), factor)
            images = torch.where(chosen, changed, images)
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    images = (images - mean) / std
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels

"""Training input: loader CPU milliseconds per image, the authors' pipeline against ours.

Same input for both: 640x360 JPEG frames (textured, quality 90) written to a temporary
folder, read in the same order, in the same process, one thread (as a loader worker
runs). Measured as process CPU time (time.process_time: every thread of the process)
per image, over whole batches including the collate step:

- authors: PIL decode + timm's train transform for vit_base_patch16_clip_384 (random
  resized crop to 384 px bicubic, flip, colour jitter 0.4, ToTensor, CLIP normalisation)
  + stacking the float32 batch (what default_collate does);
- ours (overlearning.train.gpu_augment): torchvision uint8 decode, parameter draw, crop
  slice + packing the uint8 batch. The rest (resize, flip, jitter, normalise) runs on
  the training device. On CUDA the main process's CPU time to launch it is measured
  too and counted; without a GPU it is reported separately (``device_part_on_cpu``),
  as what it would cost if the CPU had to do it, not added to the loader's time.

Also: bytes per image that cross to the device (float32 384x384 against uint8 crops),
and the largest pixel difference is not measured here (tests/test_training.py does).

    python bench/bench_loader.py --out DIR   ->   DIR/loader.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import write_result  # noqa: E402

from overlearning.core.packs import FolderImages  # noqa: E402
from overlearning.data.crop_sets import Item  # noqa: E402
from overlearning.models.embedder import build_embedding_model  # noqa: E402
from overlearning.train.gpu_augment import (  # noqa: E402
    DecodedCropDataset,
    augment,
    augment_spec,
    pack,
    sample_seed,
)
from overlearning.train.loader import load_image  # noqa: E402

CLIP = "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k"
# The real trunk's transforms need only its input size: a one-block model at 384 px.
TRUNK = {"kind": "timm", "name": CLIP,
         "overrides": {"depth": 1, "embed_dim": 64, "num_heads": 2, "img_size": 384}}


def write_frames(folder: Path, count: int, seed: int) -> list[Item]:
    """640x360 frames: smooth colour fields, edges and noise, like video frames compress."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:360, 0:640].astype(np.float32)
    items = []
    for k in range(count):
        base = rng.uniform(40, 200, size=3)
        wave = 40 * np.sin(xs / rng.uniform(20, 80) + rng.uniform(0, 6)) \
            + 40 * np.cos(ys / rng.uniform(20, 80))
        pixels = base + wave[..., None] + rng.normal(0, 12, size=(360, 640, 3))
        x0, y0 = int(rng.integers(0, 500)), int(rng.integers(0, 250))
        pixels[y0:y0 + 100, x0:x0 + 120] = rng.uniform(0, 255, size=3)
        path = folder / f"frame_{k:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        items.append(Item(path.name, k % 16, False, images=FolderImages(folder)))
    return items


def cpu_ms_per_image(run_batch: Any, batches: list[list[int]]) -> float:
    run_batch(batches[0])  # warm-up: imports, allocator, decoder tables
    start = time.process_time()
    images = 0
    for batch in batches:
        run_batch(batch)
        images += len(batch)
    return 1000 * (time.process_time() - start) / images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a loader worker's setting
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    model = build_embedding_model(TRUNK, 8)
    timm_train = model.train_transform
    spec = augment_spec(timm_train)
    report: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "frames": "640x360 JPEG q90", "images": args.images, "batch_size": args.batch,
        "authors_transform": repr(timm_train).replace("\n", " "),
    }
    with tempfile.TemporaryDirectory() as tmp:
        items = write_frames(Path(tmp), args.images, seed=0)
        batches = [list(range(s, s + args.batch)) for s in range(0, len(items), args.batch)]
        torch.manual_seed(0)

        def authors(batch: list[int]) -> torch.Tensor:
            return torch.stack([timm_train(load_image(items[i])) for i in batch])

        decoded = DecodedCropDataset(items, spec)
        packed_bytes: list[int] = []

        def ours(batch: list[int]) -> Any:
            packed = pack([decoded[(i, sample_seed(0, 1, i))] for i in batch])
            packed_bytes.append(packed.pixels.numel())
            return packed

        report["authors_cpu_ms_per_image"] = cpu_ms_per_image(authors, batches)
        report["ours_loader_cpu_ms_per_image"] = cpu_ms_per_image(ours, batches)
        packed_all = [ours(b) for b in batches]

        def device_part(batch: list[int]) -> None:
            images, _ = augment(packed_all[batch[0] // args.batch], spec, device,
                                channels_last=cuda)
            if cuda:
                torch.cuda.synchronize(device)

        device_ms = cpu_ms_per_image(device_part, batches)
    if cuda:
        # The main process's CPU time to launch the device work counts against ours.
        report["ours_device_launch_cpu_ms_per_image"] = device_ms
        report["ours_cpu_ms_per_image"] = report["ours_loader_cpu_ms_per_image"] + device_ms
    else:
        report["device_part_on_cpu_ms_per_image"] = device_ms
        report["ours_cpu_ms_per_image"] = report["ours_loader_cpu_ms_per_image"]
    report["cpu_reduction"] = report["authors_cpu_ms_per_image"] / report["ours_cpu_ms_per_image"]
    report["target_reduction"] = 4.0
    report["bytes_to_device_per_image"] = {"authors": 3 * 384 * 384 * 4,
                                           "ours": float(np.mean(packed_bytes[:len(batches)]))
                                           / args.batch}
    write_result(args.out, "loader", report)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

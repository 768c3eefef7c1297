"""Generated inputs the benchmarks share. Not a benchmark itself (the Makefile runs
bench/bench_*.py only)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from overlearning.core.packs import FolderImages
from overlearning.data.crop_sets import Item


def write_crops(folder: Path, objects: int, per_object: int, seed: int) -> list[Item]:
    """Synthetic JPEG object crops of varied size (a third persons), written in threads."""
    rng = np.random.default_rng(seed)
    images = FolderImages(folder)
    jobs = []
    for obj in range(objects):
        colour = rng.uniform(0, 255, size=3)
        for k in range(per_object):
            h, w = int(rng.integers(60, 220)), int(rng.integers(40, 180))
            jobs.append((f"v{obj:05d}/{k:05d}_{obj + 1}.jpg", colour, h, w, int(rng.integers(1 << 30))))

    def write(job: tuple) -> Item:
        name, colour, h, w, s = job
        noise = np.random.default_rng(s).normal(0, 30, size=(h, w, 3))
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
        obj = int(name.rsplit("_", 1)[1].split(".")[0])
        return Item(name, obj, (obj - 1) % 3 == 0, images=images)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(write, jobs))

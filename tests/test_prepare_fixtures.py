"""Hand-made raw datasets in the official layouts, for the preparation tests.

Builders only (no tests here): YouTube-VIS with uncompressed RLE, OVIS with compressed RLE
and polygons, CUHK03-NP / Market-1501 folders with MGCAM-style ``<folder>_seg/`` masks.
Frames are PNG so that pixel values survive exactly; masks are written as run lengths by
the small encoder below, independently of pycocotools.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VIS_CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 26, "name": "person"}]
OVIS_CATEGORIES = [{"id": 1, "name": "Person"}, {"id": 2, "name": "Bird"}]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE: column-major runs, starting with a (possibly empty) 0-run."""
    flat = mask.astype(np.uint8).ravel(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def frame_pixels(height: int, width: int, seed: int) -> np.ndarray:
    """Distinct, reproducible pixel values (so a wrong offset shows)."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 255, size=(height, width, 3), dtype=np.uint8)


def box_mask(height: int, width: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[max(y, 0):y + h, max(x, 0):x + w] = 1
    return mask


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def build_vis(root: Path, n_videos: int = 10, frames: int = 3, height: int = 12,
              width: int = 16, empty_videos: tuple[int, ...] = ()) -> dict[str, Any]:
    """YouTube-VIS-like dataset: ``root/JPEGImages/<vid>/<frame>.png`` + ``instances.json``.

    Video ``i`` (1-based id ``i``) has one cat; even videos also have a person that is
    absent (null) in the last frame. Videos listed in ``empty_videos`` have no object.
    """
    videos, annotations = [], []
    for v in range(1, n_videos + 1):
        names = [f"vid{v:03d}/{f:05d}.png" for f in range(frames)]
        videos.append({"id": v, "width": width, "height": height, "length": frames,
                       "file_names": names})
        for f, name in enumerate(names):
            write_png(root / "JPEGImages" / name, frame_pixels(height, width, seed=v * 100 + f))
        if v in empty_videos:
            continue
        objects = [(1, [(1, 1, 5, 4)] * frames)]
        if v % 2 == 0:
            objects.append((26, [(6, 2, 4, 8)] * (frames - 1) + [None]))
        for category, boxes in objects:
            segs, bboxes, areas = [], [], []
            for box in boxes:
                if box is None:
                    segs.append(None)
                    bboxes.append(None)
                    areas.append(None)
                    continue
                mask = box_mask(height, width, *box)
                segs.append(uncompressed_rle(mask))
                bboxes.append([float(c) for c in box])
                areas.append(int(mask.sum()))
            annotations.append({"id": len(annotations) + 1, "video_id": v,
                                "category_id": category, "iscrowd": 0, "height": height,
                                "width": width, "length": 1, "segmentations": segs,
                                "bboxes": bboxes, "areas": areas})
    data = {"info": {}, "licenses": [], "videos": videos, "annotations": annotations,
            "categories": VIS_CATEGORIES}
    (root / "instances.json").write_text(json.dumps(data))
    return data


def build_ovis(root: Path, height: int = 10, width: int = 12) -> dict[str, Any]:
    """OVIS-like: ``root/train/<vid>/img_0000001.png`` + ``annotations_train.json``.

    Object 1 (a person) uses compressed RLE, object 2 (a bird) polygons.
    """
    from pycocotools import mask as coco_mask

    names = [f"ovid1/img_{f:07d}.png" for f in range(1, 3)]
    for f, name in enumerate(names):
        write_png(root / "train" / name, frame_pixels(height, width, seed=900 + f))
    person = box_mask(height, width, 2, 1, 3, 6)
    rle = coco_mask.encode(np.asfortranarray(person))
    compressed = {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    polygon = [[6.0, 2.0, 10.0, 2.0, 10.0, 7.0, 6.0, 7.0]]
    data = {
        "videos": [{"id": 1, "width": width, "height": height, "length": 2,
                    "file_names": names}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentations": [compressed, compressed], "bboxes": [[2.0, 1.0, 3.0, 6.0]] * 2,
             "areas": [18, 18]},
            {"id": 2, "video_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentations": [polygon, None], "bboxes": [[6.0, 2.0, 4.0, 5.0], None],
             "areas": [20, None]},
        ],
        "categories": OVIS_CATEGORIES,
    }
    (root / "annotations_train.json").write_text(json.dumps(data))
    return data


def person_image(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A person image and its MGCAM-style 0/255 mask (an ellipse-ish blob)."""
    pixels = frame_pixels(height, width, seed)
    yy, xx = np.mgrid[:height, :width]
    mask = (((yy - height / 2) / (height / 2.2)) ** 2
            + ((xx - width / 2) / (width / 3)) ** 2 <= 1).astype(np.uint8) * 255
    return pixels, mask


def build_person_folder(root: Path, names: dict[str, list[str]], height: int = 16,
                        width: int = 8, suffix: str = ".png") -> None:
    """``root/<folder>/<name><suffix>`` and ``root/<folder>_seg/<name>.png`` for each name."""
    for folder, stems in names.items():
        for stem in stems:
            pixels, mask = person_image(height, width, seed=zlib.crc32(stem.encode()))
            image_path = root / folder / f"{stem}{suffix}"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(image_path)
            write_png(root / f"{folder}_seg" / f"{stem}.png", mask)


def build_cuhk03(root: Path) -> None:
    """``root/{labeled,detected}/{query,bounding_box_test}`` with masks beside."""
    for subset in ("labeled", "detected"):
        build_person_folder(root / subset, {
            "query": ["0001_c1_1", "0002_c1_1"],
            "bounding_box_test": ["0001_c2_1", "0001_c2_2", "0002_c2_1"],
            "bounding_box_train": ["0003_c1_1"],
        })


def build_market(root: Path) -> None:
    """Market-1501 names, with junk (-1) and distractor (0000) gallery images."""
    build_person_folder(root, {
        "query": ["0001_c1s1_000151_00", "0002_c2s1_000301_00"],
        "bounding_box_test": ["0001_c2s1_000176_01", "0002_c1s1_000326_02",
                              "-1_c1s1_000401_03", "0000_c3s1_000551_01"],
    }, suffix=".jpg")
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")

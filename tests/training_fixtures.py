"""Tiny on-disk inputs for the training tests: coloured crops, tiny trunk configs, a cache.

Crops follow docs/architecture.md: members ``<video>/<frame>_<object>.jpg`` of the pack
``<split>/foregroundImages_cropped.zip`` with ``<split>/fg_instances_cropped.json`` beside it. Every object has its own
colour and shape so a trained model can tell them apart; persons have category 26.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from overlearning.core.packs import write_pack
from overlearning.data.crop_sets import CROP_PACK, Item
from overlearning.models.weights import prepare_trunk_weights
from overlearning.train.loop import TrainJob

PERSON = 26
TIMM_TINY: dict[str, Any] = {
    "kind": "timm", "name": "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
    "overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2, "img_size": 32},
}
TORCHVISION_TINY: dict[str, Any] = {
    "kind": "torchvision", "name": "vit_b_16", "weights": "IMAGENET1K_SWAG_E2E_V1",
    "overrides": {"num_layers": 1, "hidden_dim": 32, "num_heads": 2, "mlp_dim": 64,
                  "image_size": 32},
}
# The text tower only shapes the published file (open_clip_model.safetensors), never the embedding.
OPEN_CLIP_TINY: dict[str, Any] = {
    "kind": "open_clip", "name": "ViT-B-16", "weights": "openai",
    "overrides": {"embed_dim": 16, "width": 32, "layers": 1, "head_width": 16, "image_size": 32,
                  "text_cfg": {"width": 32, "layers": 1, "heads": 2}},
}
SEGFORMER_TINY: dict[str, Any] = {
    "name": "mattmdjaga/segformer_b2_clothes", "revision": "main",
    "overrides": {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 32, 64],
                  "num_attention_heads": [1, 1, 2, 2], "decoder_hidden_size": 32},
}
TRAINING: dict[str, Any] = {
    "embedding_dim": 16, "batch_size": 8, "m_per_class": 2, "epochs": 2,
    "weight_decay": 1e-4, "num_workers": 0, "processes": 1, "amp": "none",
    "deterministic": False, "use_tuned": False,
    "ms_loss": {"alpha": 2.0, "beta": 50.0, "base": 0.5},
}
CONFUSION = {"trunk": "timm_clip", "train_persons": True, "loss": "confusion",
             "lr": 1e-3, "lr_embed": 1e-3, "weight": 20.0, "gamma": 30.0, "margin": 0.01}


def _crop(rng: np.random.Generator, colour: np.ndarray, shape: int) -> np.ndarray:
    height, width = 28 + int(rng.integers(0, 8)), 20 + int(rng.integers(0, 8))
    pixels = np.zeros((height, width, 3), dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    body = (((ys // (2 + shape)) + (xs // (2 + shape))) % 2 == 0) | (ys > height // 2)
    pixels[body] = colour
    pixels += rng.normal(0, 12, size=pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_split(split_dir: Path, objects: list[tuple[int, int, int]], seed: int = 0) -> list[str]:
    """Write crops of ``objects`` [(object_id, category_id, crops)]; return their file names."""
    rng = np.random.default_rng(seed)
    images, annotations, names, members = [], [], [], []
    for video, (object_id, category, count) in enumerate(objects, start=1):
        colour = rng.uniform(30, 255, size=3)
        shape = object_id % 4
        for frame in range(count):
            pixels = _crop(rng, colour, shape)
            name = f"video{video:03d}/{frame:05d}_{object_id}.jpg"
            encoded = io.BytesIO()
            Image.fromarray(pixels).save(encoded, format="JPEG", quality=90)
            members.append((name, encoded.getvalue()))
            height, width = pixels.shape[:2]
            rle = mask_utils.encode(np.asfortranarray(np.ones((height, width), dtype=np.uint8)))
            rle["counts"] = rle["counts"].decode()
            image_id = len(images) + 1
            images.append({"id": image_id, "video_id": video, "frame_id": frame,
                           "width": width, "height": height, "file_name": name})
            annotations.append({"id": image_id, "object_id": object_id, "video_id": video,
                                "image_id": image_id, "category_id": category,
                                "segmentation": rle, "area": width * height,
                                "bbox": [0, 0, width, height], "iscrowd": 0,
                                "bbox_prev": [5, 5, width, height]})
            names.append(name)
    index = {"videos": [{"id": v} for v in range(1, len(objects) + 1)], "images": images,
             "annotations": annotations,
             "categories": [{"id": 1, "name": "airplane"}, {"id": 2, "name": "bear"},
                            {"id": PERSON, "name": "person"}]}
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "fg_instances_cropped.json").write_text(json.dumps(index))
    with write_pack(split_dir / CROP_PACK) as pack:
        for name, data in members:
            pack.add(name, data)
    return names


def make_dataset(root: Path) -> tuple[Path, Path]:
    """train/ (6 objects + 3 persons) and valid/ (4 objects + 2 persons) under ``root``."""
    train = [(10 + i, 1 + i % 2, 5) for i in range(6)] + [(100 + i, PERSON, 4) for i in range(3)]
    valid = [(50 + i, 1 + i % 2, 4) for i in range(4)] + [(200 + i, PERSON, 3) for i in range(2)]
    make_split(root / "train", train, seed=1)
    make_split(root / "valid", valid, seed=2)
    return root / "train", root / "valid"


def make_cache(cache: Path, seed: int = 7) -> dict[str, str]:
    """A weights cache with both tiny trunks and its manifest, as the weights rule writes it."""
    from overlearning.core.atomic import write_json

    files = {**prepare_trunk_weights("timm_clip", TIMM_TINY, cache, "random", seed),
             **prepare_trunk_weights("torchvision_vit", TORCHVISION_TINY, cache, "random", seed)}
    write_json(cache / "manifest.json", files)
    return files


def make_job(tmp: Path, params: dict[str, Any] | None = None, **training: Any) -> TrainJob:
    """A tiny confusion training job on fresh fixtures under ``tmp``."""
    if not (tmp / "cache" / "manifest.json").exists():
        make_cache(tmp / "cache")
    if not (tmp / "data" / "train").exists():
        make_dataset(tmp / "data")
    params = dict(params or CONFUSION)
    trunk = TIMM_TINY if params["trunk"] == "timm_clip" else TORCHVISION_TINY
    return TrainJob(setting="test", params=params, training={**TRAINING, **training},
                    trunk_cfg=trunk, cache=tmp / "cache", train_dir=tmp / "data" / "train",
                    valid_dir=tmp / "data" / "valid", person_category=PERSON, seed=5,
                    threads=1, device="cpu")


def item_labels(items: list[Item]) -> list[int]:
    return [item.label for item in items]

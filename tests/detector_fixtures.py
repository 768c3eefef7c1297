"""Tiny randomly initialised GroundingDINO and SAM in a real weights cache, and tiny images.

The cache is written by the same function as the `model_weights` rule (source "random"), one
folder and manifest per model, so the tests load the models exactly as the workflow's rules do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from overlearning.models.weights import prepare_model_weights

TINY_MODELS: dict[str, Any] = {
    "grounding_dino": {
        "config": "GroundingDINO_SwinT_OGC", "checkpoint_url": "", "text_encoder": "tiny-bert",
        "overrides": {"enc_layers": 1, "dec_layers": 1, "num_queries": 10},
    },
    "sam": {
        "variant": "vit_b", "checkpoint_url": "",
        "overrides": {"encoder_depth": 1, "encoder_embed_dim": 32, "encoder_num_heads": 2,
                      "encoder_global_attn_indexes": [0], "image_size": 64},
    },
}
PROMPTS = ["an airplane", "a bear", "a dog", "a person", "a zebra"]
GARMENTS = ["a shirt", "a t-shirt", "a jacket"]
# GroundingDINO input side for 64x80 test images (kept small: the backbone is a full Swin-T).
IMAGE_SIZE = 64
MAX_IMAGE_SIZE = 96


def make_cache(root: Path, seed: int = 0) -> Path:
    """A weights cache holding the tiny detector and segmenter, each with its manifest."""
    for key, model_cfg in TINY_MODELS.items():
        prepare_model_weights(key, model_cfg, root, "random", seed)
    return root


def write_image(path: Path, seed: int, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    """A random RGB image of ``size`` (height, width) with a bright rectangle; PNG or JPEG."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
    h, w = size
    pixels[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = rng.integers(150, 255, size=3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_person_queries(folder: Path) -> Path:
    """A Market-style query folder of two persons from two cameras (the clothes probes' input)."""
    write_image(folder / "0001_c1_a.png", 0, size=(80, 40))
    write_image(folder / "0002_c2_b.png", 1, size=(80, 40))
    return folder


def one_torch_thread():
    """Generator for a module fixture: tiny models run fastest on one thread (no OpenMP
    spinning when other processes share the cores); the setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

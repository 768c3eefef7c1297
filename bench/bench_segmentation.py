"""SAM on detection boxes: one image encode per image against one encode per box, and
images encoded in batches against one at a time.

Ours (``overlearning.detect.segmentation.segment_boxes``) encodes each image once and decodes all of
its k boxes in one call. The naive version is what the study's script did: encode the image
again for every box. Both give the same masks (checked here, pixel agreement). The model is
SAM built from segment_anything's classes with random weights: by default a reduced ViT
(set by --depth/--embed/--image-size, so the default run stays short on a CPU); --full
builds the real ViT-B at 1024 px (use it on a GPU).

    python bench/bench_segmentation.py --out DIR   ->   DIR/segmentation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import write_result  # noqa: E402

from overlearning.detect.segmentation import (  # noqa: E402
    encode_images,
    make_predictor,
    segment_boxes,
)
from overlearning.models.detectors import build_sam  # noqa: E402


def naive_segment(predictor, image: np.ndarray, boxes: list[list[float]]) -> np.ndarray:
    """The study's way: a full image encode for every box."""
    return np.stack([segment_boxes(predictor, image, [box], 0.0, "union")[0] for box in boxes])


def random_boxes(rng: np.random.Generator, k: int, height: int, width: int) -> list[list[float]]:
    x0 = rng.uniform(0, width * 0.6, k)
    y0 = rng.uniform(0, height * 0.6, k)
    return [[float(a), float(b), float(a + rng.uniform(10, width * 0.4)),
             float(b + rng.uniform(10, height * 0.4))] for a, b in zip(x0, y0, strict=True)]


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def run(images: int, ks: list[int], image_hw: tuple[int, int], sam_cfg: dict, seed: int) -> dict:
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sam = build_sam(sam_cfg).to(device)
    predictor = make_predictor(sam)
    rng = np.random.default_rng(seed)
    pictures = [rng.integers(0, 255, size=(*image_hw, 3), dtype=np.uint8) for _ in range(images)]
    segment_boxes(predictor, pictures[0], random_boxes(rng, 1, *image_hw), 0.0)  # warm-up
    rows = []
    for k in ks:
        boxes = [random_boxes(rng, k, *image_hw) for _ in range(images)]
        ours_s, ours = timed(lambda b=boxes: [segment_boxes(predictor, p, bb, 0.0, "union")
                                              for p, bb in zip(pictures, b, strict=True)])
        naive_s, naive = timed(lambda b=boxes: [naive_segment(predictor, p, bb)
                                                for p, bb in zip(pictures, b, strict=True)])
        agreement = float(np.mean([np.mean(a == b) for a, b in zip(ours, naive, strict=True)]))
        rows.append({"images": images, "boxes_per_image": k, "ours_s": round(ours_s, 4),
                     "naive_s": round(naive_s, 4), "speedup": round(naive_s / ours_s, 2),
                     "ours_s_per_image": round(ours_s / images, 4),
                     "encodes_ours": images, "encodes_naive": images * k,
                     "mask_pixel_agreement": round(agreement, 6)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    # Image encoder on all N images in one call against N calls (the decode is the same).
    one_s, singles = timed(lambda: [encode_images(predictor, [p]) for p in pictures])
    batch_s, batched = timed(lambda: encode_images(predictor, pictures))
    encode = {"images": images, "one_at_a_time_s": round(one_s, 4),
              "batched_s": round(batch_s, 4), "speedup": round(one_s / batch_s, 2),
              "max_feature_difference": float(max(
                  (batched[i] - s[0]).abs().max() for i, s in enumerate(singles)))}
    print(json.dumps(encode), file=sys.stderr)
    return {
        "batched_encode": encode,
        "benchmark": "segmentation",
        "what": "SAM masks for N images with k boxes each: one image encode per image "
                "(ours) against one encode per box (the study's script)",
        "device": torch.cuda.get_device_name(0) if device == "cuda" else
        f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads)",
        "sam": sam_cfg, "image_hw": list(image_hw), "seed": seed, "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for segmentation.json")
    parser.add_argument("--images", type=int, default=3, help="N images")
    parser.add_argument("--boxes", type=int, nargs="+", default=[1, 4, 16], help="k values")
    parser.add_argument("--image-hw", type=int, nargs=2, default=[192, 256])
    parser.add_argument("--depth", type=int, default=6, help="ViT depth (reduced SAM)")
    parser.add_argument("--embed", type=int, default=384, help="ViT width (reduced SAM)")
    parser.add_argument("--image-size", type=int, default=512, help="SAM input side")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--full", action="store_true", help="the real SAM ViT-B at 1024 px")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.full:
        sam_cfg = {"variant": "vit_b", "overrides": {}}
    else:
        sam_cfg = {"variant": "vit_b", "overrides": {
            "encoder_depth": args.depth, "encoder_embed_dim": args.embed,
            "encoder_num_heads": max(1, args.embed // 64),
            "encoder_global_attn_indexes": [args.depth - 1], "image_size": args.image_size}}
    result = run(args.images, args.boxes, tuple(args.image_hw), sam_cfg, args.seed)
    write_result(args.out, "segmentation", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

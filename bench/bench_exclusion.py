"""Index exclusion at scale: our RLE mask IoU against dense per-pair IoU loops.

Ours (``overlearning.safeguards.exclusion.vis_exclusion``) compares run-length encoded masks with
pycocotools (one call per frame for the whole ground-truth x detection matrix). The naive
version follows the study's script: decode every mask to a dense array, fill the detection
polygons, compute the IoU of each (ground truth, detection) pair with numpy in a Python
double loop, then the Hungarian solver on 1 - IoU. Synthetic split: F frames, G objects
and D detections per frame (most a noisy copy of an object, some false alarms; matches are
clear-cut, so both versions must agree: the agreement is reported).

    python bench/bench_exclusion.py --out DIR   ->   DIR/exclusion.json
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
from scipy.optimize import linear_sum_assignment
from torchvision.ops import nms as tv_nms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import write_result  # noqa: E402

from overlearning.core.masks import decode_segmentation, encode_mask  # noqa: E402
from overlearning.detect.segmentation import polygon_to_mask  # noqa: E402
from overlearning.safeguards.exclusion import (  # noqa: E402
    CATEGORIES,
    ExclusionSettings,
    category,
    is_person_label,
    vis_exclusion,
)

PERSON = 26


def synthetic_split(frames: int, objects: int, detections: int, hw: tuple[int, int],
                    seed: int) -> tuple[dict, dict, dict, dict]:
    """(instances, frame_index, detections, masks) of a synthetic test split."""
    rng = np.random.default_rng(seed)
    h, w = hw
    images, crops, annotations, dets = [], [], [], {}
    for f in range(frames):
        name = f"v{f // 20:04d}/{f % 20:05d}.jpg"
        images.append({"id": f + 1, "video_id": f // 20, "frame_id": f % 20, "file_name": name,
                       "width": w, "height": h})
        rects = []
        for _ in range(objects):
            x0, y0 = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            x1 = min(w - 1, x0 + int(rng.integers(30, w // 3)))
            y1 = min(h - 1, y0 + int(rng.integers(30, h // 2)))
            rects.append((x0, y0, x1, y1))
            mask = np.zeros((h, w), dtype=np.uint8)
            mask[y0:y1 + 1, x0:x1 + 1] = 1
            crop_id = len(crops) + 1
            cat = PERSON if rng.random() < 0.4 else int(rng.integers(1, 26))
            crops.append({"id": crop_id, "video_id": f // 20, "frame_id": f % 20,
                          "file_name": f"{name[:-4]}_{crop_id}.jpg", "width": w, "height": h})
            annotations.append({"id": crop_id, "object_id": crop_id, "image_id": crop_id,
                                "category_id": cat, "segmentation": encode_mask(mask)})
        frame_dets = []
        for d in range(detections):
            # Most detections are noisy copies of an object, some are false alarms.
            if rng.random() < 0.75:
                x0, y0, x1, y1 = rects[d % objects]
            else:
                x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
                x1, y1 = x0 + 30, y0 + 30
            jitter = rng.integers(-4, 5, size=4)
            bx0, by0 = max(0, x0 + int(jitter[0])), max(0, y0 + int(jitter[1]))
            bx1, by1 = min(w - 1, x1 + int(jitter[2])), min(h - 1, y1 + int(jitter[3]))
            frame_dets.append({
                "label": "a person" if rng.random() < 0.5 else "a dog",
                "confidence": round(float(rng.uniform(0.2, 1.0)), 3),
                "box": [float(bx0), float(by0), float(bx1), float(by1)],
                "mask_polygon": [[bx0, by0], [bx0, by1], [bx1, by1], [bx1, by0]],
            })
        dets[name] = frame_dets
    instances = {"images": images, "annotations": [], "categories": [], "videos": []}
    frame_index = {"images": crops, "annotations": annotations, "categories": [], "videos": []}
    plain = {k: [{f: d[f] for f in ("label", "confidence", "box")} for d in v]
             for k, v in dets.items()}
    return instances, frame_index, plain, dets


def naive_exclusion(instances: dict, frame_index: dict, masks: dict,
                    settings: ExclusionSettings) -> dict[str, list[str]]:
    """The study's approach: dense masks, per-pair IoU loops, Hungarian on 1 - IoU."""
    frame_of = {(i["video_id"], i["frame_id"]): i["file_name"] for i in instances["images"]}
    crops = {i["id"]: i for i in frame_index["images"]}
    by_frame: dict[str, list] = {}
    for a in frame_index["annotations"]:
        image = crops[a["image_id"]]
        mask = decode_segmentation(a["segmentation"], image["height"], image["width"], "")
        by_frame.setdefault(frame_of[(image["video_id"], image["frame_id"])], []).append(
            (image["file_name"], a["category_id"] == PERSON, mask))
    result: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for frame, gts in by_frame.items():
        dets = masks.get(frame, [])
        if dets:
            keep = tv_nms(torch.tensor([d["box"] for d in dets], dtype=torch.float64),
                          torch.tensor([d["confidence"] for d in dets], dtype=torch.float64),
                          settings.nms_iou).tolist()
            dets = [dets[i] for i in keep]
        shape = gts[0][2].shape
        det_masks = [polygon_to_mask(d["mask_polygon"], shape) for d in dets]
        iou = np.zeros((len(gts), len(det_masks)))
        for i, (_, _, gt) in enumerate(gts):
            for j, dm in enumerate(det_masks):
                union = np.logical_or(gt, dm).sum()
                iou[i, j] = np.logical_and(gt, dm).sum() / union if union else 0.0
        matched = {}
        if det_masks:
            rows, cols = linear_sum_assignment(1.0 - iou)
            matched = {g: d for g, d in zip(rows, cols, strict=True)
                       if iou[g, d] >= settings.match_iou}
        for g, (name, is_person, _) in enumerate(gts):
            det_person = (is_person_label(dets[matched[g]]["label"], settings.person_label)
                          if g in matched else None)
            found = category(is_person, det_person)
            if found:
                result[found].append(name)
    return {c: sorted(v) for c, v in result.items()}


def run(frame_counts: list[int], objects: int, detections: int, hw: tuple[int, int],
        seed: int, naive_max: int) -> dict:
    settings = ExclusionSettings()
    rows = []
    for frames in frame_counts:
        instances, frame_index, plain, masks = synthetic_split(frames, objects, detections, hw,
                                                               seed)
        start = time.perf_counter()
        ours, summary = vis_exclusion(frame_index, instances, plain, masks, PERSON, settings)
        ours_s = time.perf_counter() - start
        row = {"frames": frames, "objects": frames * objects,
               "detections": frames * detections, "ours_s": round(ours_s, 4),
               "ours_frames_per_s": round(frames / ours_s, 1),
               "categories": summary["categories"]}
        if frames <= naive_max:
            start = time.perf_counter()
            naive = naive_exclusion(instances, frame_index, masks, settings)
            naive_s = time.perf_counter() - start
            row.update(naive_s=round(naive_s, 4), speedup=round(naive_s / ours_s, 2),
                       same_lists_as_naive=naive == ours)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {
        "benchmark": "exclusion",
        "what": "ground-truth-mode exclusion over a synthetic split: RLE mask IoU per frame "
                "(ours) against dense per-pair IoU loops (the study's script)",
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "frame_hw": list(hw), "objects_per_frame": objects,
        "detections_per_frame": detections, "seed": seed, "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for exclusion.json")
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 200, 400])
    parser.add_argument("--objects", type=int, default=4, help="ground-truth objects per frame")
    parser.add_argument("--detections", type=int, default=8, help="detections per frame")
    parser.add_argument("--frame-hw", type=int, nargs=2, default=[360, 640])
    parser.add_argument("--naive-max", type=int, default=400,
                        help="largest frame count the naive version is run on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = run(args.frames, args.objects, args.detections, tuple(args.frame_hw), args.seed,
                 args.naive_max)
    write_result(args.out, "exclusion", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SAM masks for detection boxes, stored as the largest external contour (a polygon).

The image encoder runs once per image (``SamPredictor.set_image``); all of the image's boxes
then go through the prompt encoder and mask decoder in one ``predict_torch`` call. A mask is
SAM's logits above ``mask_threshold``; with ``multimask: union`` (the authors' behaviour:
they averaged SAM's three candidate masks and kept pixels above 0) it is the union of the
three candidates, with ``single`` SAM's single-mask output. The stored polygon is the
largest external contour (OpenCV, simple chain approximation); a mask whose largest contour
has fewer than 3 points (empty, a pixel, a straight line) is stored as ``[]`` and counted.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from overlearning.core.image_io import read_rgb
from overlearning.core.paths import contained
from overlearning.detect.detection_files import (
    Detections,
    check_boxes_inside,
    load_detections,
    write_json,
)
from overlearning.models.detectors import load_sam

MULTIMASK_MODES = ("union", "single")


def mask_to_polygon(mask: np.ndarray) -> list[list[int]]:
    """Largest external contour of a binary mask as [[x, y], ...]; [] if degenerate."""
    import cv2

    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return []
    # max() keeps the first of equal areas: OpenCV's contour order is deterministic.
    largest = max(contours, key=cv2.contourArea)
    if len(largest) < 3:
        return []
    return largest.reshape(-1, 2).astype(int).tolist()


def polygon_to_mask(polygon: Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Filled polygon as a bool mask of ``shape`` (height, width); [] gives an empty mask."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    if len(polygon) >= 3:
        points = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def segment_boxes(predictor: Any, image: np.ndarray, boxes: Sequence[Sequence[float]],
                  mask_threshold: float, multimask: str = "union") -> np.ndarray:
    """Masks (n, H, W) bool for ``boxes`` on an RGB uint8 image: one image encode in total."""
    import torch

    if multimask not in MULTIMASK_MODES:
        raise ValueError(f"multimask must be one of {MULTIMASK_MODES}, got {multimask!r}")
    height, width = image.shape[:2]
    if len(boxes) == 0:
        return np.zeros((0, height, width), dtype=bool)
    predictor.set_image(image)
    box_tensor = torch.as_tensor(np.asarray(boxes, dtype=np.float32), device=predictor.device)
    box_tensor = predictor.transform.apply_boxes_torch(box_tensor, (height, width))
    with torch.no_grad():
        logits, _, _ = predictor.predict_torch(None, None, boxes=box_tensor,
                                               multimask_output=multimask == "union",
                                               return_logits=True)
    masks = (logits > mask_threshold).any(dim=1)
    return masks.cpu().numpy()


def make_predictor(sam: Any) -> Any:
    from segment_anything import SamPredictor

    return SamPredictor(sam)


def segment_detections(sam: Any, detections: Mapping[str, list], image_root: Path | str,
                       mask_threshold: float, multimask: str = "union",
                       desc: str = "segment", source: Path | str = "detections"
                       ) -> tuple[Detections, dict[str, int]]:
    """Every detection with its ``mask_polygon``; counts of images, masks and degenerate masks.

    Images without detections are kept with an empty list and never opened. ``source``
    names the detection file in errors; every image it names must lie inside ``image_root``
    (checked for all of them before the first is read).
    """
    from tqdm import tqdm

    image_root = Path(image_root)
    image_paths = {name: contained(image_root, name, source, f"image {name!r}")
                   for name in detections if detections[name]}
    predictor = make_predictor(sam)
    out: Detections = {}
    counts = {"images": len(detections), "images_segmented": 0, "masks": 0,
              "degenerate_masks": 0}
    for name in tqdm(sorted(detections), desc=desc, unit="img", file=sys.stderr):
        dets = detections[name]
        if not dets:
            out[name] = []
            continue
        image = read_rgb(image_paths[name])
        check_boxes_inside(dets, image.shape[1], image.shape[0], source, name)
        masks = segment_boxes(predictor, image, [d["box"] for d in dets], mask_threshold,
                              multimask)
        entries = []
        for det, mask in zip(dets, masks, strict=True):
            polygon = mask_to_polygon(mask)
            counts["degenerate_masks"] += not polygon
            entries.append({**det, "mask_polygon": polygon})
        out[name] = entries
        counts["images_segmented"] += 1
        counts["masks"] += len(entries)
    return out, counts


def run_segment(detections_path: Path | str, image_root: Path | str,
                models_cfg: Mapping[str, Any], segmentation_cfg: Mapping[str, Any],
                cache: Path | str, out: Path | str) -> dict[str, int]:
    """The ``segment`` rule: a mask polygon for every detection of a set."""
    detections = load_detections(detections_path)
    sam = load_sam(models_cfg, cache)
    masks, counts = segment_detections(sam, detections, image_root,
                                       segmentation_cfg["mask_threshold"],
                                       segmentation_cfg["multimask"], source=detections_path)
    write_json(out, masks)
    return counts

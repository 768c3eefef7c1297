"""SAM masks for detection boxes, stored as the largest external contour (a polygon).

The image encoder runs once per image, on ``segmentation.batch_size`` images at a time (each
resized and padded to SAM's square input exactly as ``SamPredictor.set_image`` does, so a
batch changes no number beyond float rounding); all of an image's boxes then go through the
prompt encoder and mask decoder in one ``predict_torch`` call. ``segmentation.precision``
(CUDA only; a CPU runs fp32) applies to the image encoder, the heavy part; the decoder
stays float32. A mask is
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

from overlearning.core.packs import check_image, open_images
from overlearning.core.precision import precision_context, precision_for
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

    if multimask not in MULTIMASK_MODES:
        raise ValueError(f"multimask must be one of {MULTIMASK_MODES}, got {multimask!r}")
    height, width = image.shape[:2]
    if len(boxes) == 0:
        return np.zeros((0, height, width), dtype=bool)
    predictor.set_image(image)
    return segment_encoded(predictor, predictor.features, (height, width), boxes,
                           mask_threshold, multimask)


def encode_images(predictor: Any, images: Sequence[np.ndarray], precision: str = "fp32"
                  ) -> Any:
    """SAM image embeddings (n, 256, g, g) float32 of RGB uint8 images, one encoder call."""
    import torch

    sam = predictor.model
    device = predictor.device
    tensors = []
    for image in images:
        resized = predictor.transform.apply_image(image)
        tensor = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()
        tensors.append(sam.preprocess(tensor[None])[0])  # normalise, pad to the square
    with torch.no_grad(), precision_context(device, precision):
        features = sam.image_encoder(torch.stack(tensors))
    return features.float()


BOX_CHUNK = 32  # boxes decoded per SAM call


def segment_encoded(predictor: Any, features: Any, image_shape: tuple[int, int],
                    boxes: Sequence[Sequence[float]], mask_threshold: float,
                    multimask: str = "union") -> np.ndarray:
    """``segment_boxes`` for an image already encoded (``features``: (1, 256, g, g))."""
    import torch

    if multimask not in MULTIMASK_MODES:
        raise ValueError(f"multimask must be one of {MULTIMASK_MODES}, got {multimask!r}")
    height, width = image_shape
    if len(boxes) == 0:
        return np.zeros((0, height, width), dtype=bool)
    # The predictor's state as set_image leaves it, with features computed in a batch.
    predictor.reset_image()
    predictor.features = features
    predictor.original_size = (height, width)
    predictor.input_size = tuple(predictor.transform.get_preprocess_shape(
        height, width, predictor.transform.target_length))
    predictor.is_image_set = True
    box_tensor = torch.as_tensor(np.asarray(boxes, dtype=np.float32), device=predictor.device)
    box_tensor = predictor.transform.apply_boxes_torch(box_tensor, (height, width))
    # Boxes in chunks: each box's full-size logits cost ~24 MB at SAM's 1024 input, and an
    # image can have hundreds of boxes (every query of an untrained detector, a crowd).
    chunks = []
    with torch.no_grad():
        for start in range(0, len(box_tensor), BOX_CHUNK):
            logits, _, _ = predictor.predict_torch(None, None,
                                                   boxes=box_tensor[start:start + BOX_CHUNK],
                                                   multimask_output=multimask == "union",
                                                   return_logits=True)
            chunks.append((logits > mask_threshold).any(dim=1).cpu().numpy())
    return np.concatenate(chunks)


def make_predictor(sam: Any) -> Any:
    from segment_anything import SamPredictor

    return SamPredictor(sam)


def segment_detections(sam: Any, detections: Mapping[str, list], image_root: Path | str,
                       mask_threshold: float, multimask: str = "union",
                       desc: str = "segment", source: Path | str = "detections",
                       batch_size: int = 1, precision: str = "fp32"
                       ) -> tuple[Detections, dict[str, int]]:
    """Every detection with its ``mask_polygon``; counts of images, masks and degenerate masks.

    Images without detections are kept with an empty list and never opened. ``source``
    names the detection file in errors; every image it names must lie inside ``image_root``
    (checked for all of them before the first is read). The images with detections are
    encoded ``batch_size`` at a time (in name order) at ``precision``.
    """
    from tqdm import tqdm

    images_of = open_images(image_root)
    for name in detections:
        if detections[name]:
            check_image(images_of, name, source, f"image {name!r}")
    predictor = make_predictor(sam)
    out: Detections = {name: [] for name in detections if not detections[name]}
    counts = {"images": len(detections), "images_segmented": 0, "masks": 0,
              "degenerate_masks": 0}
    todo = [name for name in sorted(detections) if detections[name]]
    progress = tqdm(total=len(todo), desc=desc, unit="img", file=sys.stderr)
    for start in range(0, len(todo), max(1, batch_size)):
        names = todo[start:start + max(1, batch_size)]
        images = [images_of.read_rgb(name) for name in names]
        features = encode_images(predictor, images, precision)
        for i, (name, image) in enumerate(zip(names, images, strict=True)):
            dets = detections[name]
            check_boxes_inside(dets, image.shape[1], image.shape[0], source, name)
            masks = segment_encoded(predictor, features[i:i + 1], image.shape[:2],
                                    [d["box"] for d in dets], mask_threshold, multimask)
            entries = []
            for det, mask in zip(dets, masks, strict=True):
                polygon = mask_to_polygon(mask)
                counts["degenerate_masks"] += not polygon
                entries.append({**det, "mask_polygon": polygon})
            out[name] = entries
            counts["images_segmented"] += 1
            counts["masks"] += len(entries)
        progress.update(len(names))
    progress.close()
    return dict(sorted(out.items())), counts


def run_segment(detections_path: Path | str, image_root: Path | str,
                models_cfg: Mapping[str, Any], segmentation_cfg: Mapping[str, Any],
                cache: Path | str, out: Path | str) -> dict[str, int]:
    """The ``segment`` rule: a mask polygon for every detection of a set."""
    detections = load_detections(detections_path)
    sam = load_sam(models_cfg, cache)
    device = next(sam.parameters()).device
    masks, counts = segment_detections(
        sam, detections, image_root, segmentation_cfg["mask_threshold"],
        segmentation_cfg["multimask"], source=detections_path,
        batch_size=segmentation_cfg.get("batch_size", 1),
        precision=precision_for(device, segmentation_cfg.get("precision", "fp32")))
    write_json(out, masks)
    return counts

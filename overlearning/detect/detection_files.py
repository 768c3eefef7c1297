"""Reading (with validation) and writing the detection, mask and exclusion JSON files.

Detections: ``{image: [{label, confidence, box: [x1, y1, x2, y2]}]}``; masks: the same with
``mask_polygon: [[x, y], ...]`` beside each detection (``[]`` where SAM found no region).
A malformed file stops the rule with ``WorkflowInputError`` naming the file and the entry;
nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from overlearning.core.atomic import read_json, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.paths import check_relative
from overlearning.core.validate import DETECTOR_BOX_TOLERANCE, check_box_inside, is_number

__all__ = ["Detections", "read_json", "write_json", "validate_detections", "validate_masks",
           "check_masks_match", "check_boxes_inside", "load_detections", "load_masks"]

Detections = dict[str, list[dict[str, Any]]]


def _number(value: Any) -> bool:
    return is_number(value)


def _check_detection(det: Any, where: str, path: Path) -> dict[str, Any]:
    if not isinstance(det, dict):
        raise WorkflowInputError(path, f"{where}: a detection must be an object, got {det!r}")
    missing = [k for k in ("label", "confidence", "box") if k not in det]
    if missing:
        raise WorkflowInputError(path, f"{where}: detection lacks {', '.join(missing)}")
    label, confidence, box = det["label"], det["confidence"], det["box"]
    if not isinstance(label, str):
        raise WorkflowInputError(path, f"{where}: label must be a string, got {label!r}")
    if not _number(confidence) or not 0.0 <= confidence <= 1.0:
        raise WorkflowInputError(path, f"{where}: confidence must be a number in [0, 1], "
                                       f"got {confidence!r}")
    if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
        raise WorkflowInputError(path, f"{where}: box must be [x1, y1, x2, y2] numbers, got {box!r}")
    if box[2] < box[0] or box[3] < box[1]:
        raise WorkflowInputError(path, f"{where}: box {box} has x2 < x1 or y2 < y1")
    return det


def validate_detections(data: Any, path: Path | str) -> Detections:
    """Check the detection format; return it unchanged (image -> list of detections)."""
    path = Path(path)
    if not isinstance(data, dict):
        raise WorkflowInputError(path, "detections must be an object {image: [detections]}")
    for image, dets in data.items():
        # Image names are joined to an image folder later: no absolute names, no '..'.
        check_relative(image, path, f"image {image!r}")
        if not isinstance(dets, list):
            raise WorkflowInputError(path, f"{image}: detections must be a list")
        for i, det in enumerate(dets):
            _check_detection(det, f"{image}[{i}]", path)
    return data


def _check_polygon(polygon: Any, where: str, path: Path) -> None:
    if not isinstance(polygon, list):
        raise WorkflowInputError(path, f"{where}: mask_polygon must be a list of [x, y] points")
    for point in polygon:
        if not (isinstance(point, list) and len(point) == 2 and all(_number(v) for v in point)):
            raise WorkflowInputError(path, f"{where}: mask_polygon point {point!r} is not [x, y]")


def validate_masks(data: Any, path: Path | str) -> Detections:
    """Check the mask format (detections + ``mask_polygon``); return it unchanged."""
    path = Path(path)
    validate_detections(data, path)
    for image, dets in data.items():
        for i, det in enumerate(dets):
            if "mask_polygon" not in det:
                raise WorkflowInputError(path, f"{image}[{i}]: detection lacks mask_polygon")
            _check_polygon(det["mask_polygon"], f"{image}[{i}]", path)
    return data


def check_masks_match(detections: Mapping[str, list], masks: Mapping[str, list],
                      det_path: Path | str, mask_path: Path | str) -> None:
    """The mask file must describe exactly the detections (same images, order, boxes, labels).

    An image whose detection list is empty may be absent from the mask file.
    """
    extra = sorted(set(masks) - set(detections))
    if extra:
        raise WorkflowInputError(mask_path, f"masks for {len(extra)} image(s) without detections "
                                            f"in {det_path}, e.g. {extra[0]}")
    for image, dets in detections.items():
        seg = masks.get(image, [])
        if len(seg) != len(dets):
            raise WorkflowInputError(mask_path, f"{image}: {len(seg)} mask(s) for {len(dets)} "
                                                f"detection(s) in {det_path}; re-run segmentation")
        for i, (d, m) in enumerate(zip(dets, seg, strict=True)):
            if (d["label"], d["confidence"], list(d["box"])) != \
                    (m["label"], m["confidence"], list(m["box"])):
                raise WorkflowInputError(mask_path, f"{image}[{i}]: mask entry does not belong to "
                                                    f"detection {d} of {det_path}")


def check_boxes_inside(dets: list[dict[str, Any]], width: int, height: int, path: Path | str,
                       image: str) -> None:
    """Boxes (and mask polygons, where present) within the image up to the stated tolerance.

    A detector's boxes overhang the border by at most half a side (DETECTOR_BOX_TOLERANCE);
    one beyond belongs to another image (a renamed or resized file) or to a corrupted file.
    Mask polygons are drawn inside the image and get the tight tolerance.
    """
    for i, det in enumerate(dets):
        x1, y1, x2, y2 = det["box"]
        check_box_inside(x1, y1, x2, y2, width, height, path, f"{image}[{i}].box",
                         DETECTOR_BOX_TOLERANCE)
        polygon = det.get("mask_polygon") or []
        if polygon:
            xs = [p[0] for p in polygon]
            ys = [p[1] for p in polygon]
            check_box_inside(min(xs), min(ys), max(xs), max(ys), width, height, path,
                             f"{image}[{i}].mask_polygon")


def load_detections(path: Path | str) -> Detections:
    return validate_detections(read_json(path), path)


def load_masks(path: Path | str) -> Detections:
    return validate_masks(read_json(path), path)

"""Index exclusion: which crops (or gallery images) never enter the search index, and why.

Four categories (REFERENCE.md, "Detection, segmentation, index exclusion"):

- ``Detected Person Exclusion``: a ground-truth person matched to a "person" detection;
- ``Undetected Instance Exclusion``: a ground-truth person that no detection matches;
- ``Misclassified Instance Exclusion``: a ground-truth non-person matched to a "person"
  detection;
- ``Misclassified Instance Inclusion``: a ground-truth person matched to a non-person
  detection (the leak: it stays in the index).

The first three are removed from the index at evaluation time. Per image: class-agnostic
NMS on the boxes (IoU > ``nms_iou`` suppresses; equal confidences keep the earlier
detection), then the optional confidence floor, then mask IoU (pycocotools) between
ground-truth masks and detection polygons filled at the image's size.

- Ground-truth mode (YouTube-VIS test frames): optimal one-to-one matching (scipy's
  Hungarian solver). ``matching: thresholded`` (default) matches over the pairs with
  IoU >= ``match_iou`` only; among equally good matchings the one using higher-confidence
  detections wins. ``matching: authors`` is the authors' rule: the Hungarian solver on
  1 - IoU over all pairs, pairs below ``match_iou`` dropped afterwards (a sub-threshold
  pair can take a detection away from a valid one). Both are computed on every frame; the
  summary counts the instances excluded under one rule only
  (``excluded_only_by_thresholded``, ``excluded_only_by_authors``).
- Detection-only mode (CUHK03 / Market galleries, every image one person): the detection
  whose mask overlaps the person mask (MGCAM, or the whole image) most decides; equal IoU
  goes to the higher confidence; no overlapping detection means undetected.

Every special case is counted in the summary; docs/exclusion.md lists them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import mask_from_bytes
from overlearning.core.masks import decode_segmentation
from overlearning.core.packs import (
    ImageSource,
    check_image,
    image_header_size,
    image_names,
    open_images,
)
from overlearning.detect.detection_files import (
    check_boxes_inside,
    check_masks_match,
    load_detections,
    load_masks,
    read_json,
    write_json,
)
from overlearning.detect.segmentation import polygon_to_mask
from overlearning.safeguards.categories import (
    CATEGORIES,
    DETECTED,
    EXCLUDED_CATEGORIES,
    MISCLASSIFIED_EXCLUSION,
    MISCLASSIFIED_INCLUSION,
    UNDETECTED,
)

COUNTERS = ("detections", "removed_by_nms", "below_min_confidence", "empty_polygons",
            "degenerate_polygons")
MATCHING_RULES = ("thresholded", "authors")


@dataclass(frozen=True)
class ExclusionSettings:
    nms_iou: float = 0.7
    min_confidence: float | None = None
    match_iou: float = 0.5
    person_label: str = "person"
    matching: str = "thresholded"  # or "authors" (MATCHING_RULES; see the module docstring)

    def __post_init__(self) -> None:
        if self.matching not in MATCHING_RULES:
            raise WorkflowInputError("exclusion.matching", f"must be one of {MATCHING_RULES}, "
                                                           f"not {self.matching!r}")


def is_person_label(label: str, person_label: str) -> bool:
    """The authors' test: the person name occurs in the detection's phrase."""
    return person_label.lower() in label.lower()


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of [x1, y1, x2, y2] boxes (torchvision's definition: no +1 on sizes)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy class-agnostic NMS; kept indices by descending score, ties by index."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return []
    order = np.lexsort((np.arange(n), -scores))
    iou = box_iou(boxes, boxes)
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return keep


def select_detections(dets: Sequence[Mapping[str, Any]], settings: ExclusionSettings,
                      counts: dict[str, int]) -> list[Mapping[str, Any]]:
    """NMS, then the confidence floor; ``counts`` records what each step removed."""
    counts["detections"] += len(dets)
    if not dets:
        return []
    keep = nms(np.array([d["box"] for d in dets], dtype=np.float64),
               np.array([d["confidence"] for d in dets], dtype=np.float64), settings.nms_iou)
    counts["removed_by_nms"] += len(dets) - len(keep)
    kept = [dets[i] for i in keep]
    if settings.min_confidence is not None:
        floor = settings.min_confidence
        counts["below_min_confidence"] += sum(d["confidence"] < floor for d in kept)
        kept = [d for d in kept if d["confidence"] >= floor]
    return kept


def encode(mask: np.ndarray) -> dict[str, Any]:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def polygon_rle(polygon: Sequence[Sequence[float]], height: int, width: int,
                counts: dict[str, int]) -> dict[str, Any]:
    """A detection polygon as RLE; [] and 1-2 point polygons are empty masks (counted)."""
    if len(polygon) == 0:
        counts["empty_polygons"] += 1
    elif len(polygon) < 3:
        counts["degenerate_polygons"] += 1
    return encode(polygon_to_mask(polygon if len(polygon) >= 3 else [], (height, width)))


def mask_iou(gt_rles: Sequence[dict], det_rles: Sequence[dict]) -> np.ndarray:
    """IoU matrix (ground truth x detections) of RLE masks; empty masks give 0."""
    if not gt_rles or not det_rles:
        return np.zeros((len(gt_rles), len(det_rles)))
    iou = coco_mask.iou(list(gt_rles), list(det_rles), [0] * len(det_rles))
    return np.asarray(iou, dtype=np.float64).reshape(len(gt_rles), len(det_rles))


def match(iou: np.ndarray, threshold: float, rule: str = "thresholded") -> dict[int, int]:
    """Optimal one-to-one matching, {gt index: det index}; ``rule="authors"``: see
    :func:`match_authors`. Otherwise over pairs with IoU >= threshold only:

    The total IoU of the valid pairs is maximised; a pair below the threshold can never
    take a detection away from a valid pair. Detections are in descending confidence; a
    negligible bonus (at most 1e-9) settles exact ties: the higher-confidence detection
    wins, and the earlier ground-truth instance gets the higher-confidence detection.
    """
    if rule == "authors":
        return match_authors(iou, threshold)
    valid = iou >= threshold
    if not valid.any():
        return {}
    n_gt, n_det = iou.shape
    # Rearrangement inequality: sum of products is largest when both orders agree.
    bonus = 1e-9 * np.outer((n_gt - np.arange(n_gt)) / n_gt, (n_det - np.arange(n_det)) / n_det)
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(np.where(valid, iou + bonus, 0.0), maximize=True)
    return {int(g): int(d) for g, d in zip(rows, cols, strict=True) if valid[g, d]}


def match_authors(iou: np.ndarray, threshold: float) -> dict[int, int]:
    """The authors' matching: scipy's Hungarian solver minimising 1 - IoU over every pair,
    then pairs with IoU below the threshold dropped. Ties fall as the solver leaves them."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return {}
    rows, cols = linear_sum_assignment(1.0 - iou)
    return {int(g): int(d) for g, d in zip(rows, cols, strict=True) if iou[g, d] >= threshold}


def category(gt_person: bool, det_person: bool | None) -> str | None:
    """The exclusion category of one ground-truth instance (None: a correct non-person)."""
    if det_person is None:
        return UNDETECTED if gt_person else None
    if gt_person:
        return DETECTED if det_person else MISCLASSIFIED_INCLUSION
    return MISCLASSIFIED_EXCLUSION if det_person else None


@dataclass(frozen=True)
class Instance:
    """One ground-truth object: its crop name, whether it is a person, its mask (RLE)."""

    name: str
    is_person: bool
    rle: dict[str, Any]


def categorize_frame(instances: Sequence[Instance], dets: Sequence[Mapping[str, Any]],
                     height: int, width: int, settings: ExclusionSettings,
                     counts: dict[str, int]) -> list[tuple[str, str]]:
    """(crop name, category) for the frame's instances that fall in a category."""
    kept = select_detections(dets, settings, counts)
    det_rles = [polygon_rle(d["mask_polygon"], height, width, counts) for d in kept]
    iou = mask_iou([i.rle for i in instances], det_rles)
    found_by = {}
    for rule in MATCHING_RULES:
        pairs = match(iou, settings.match_iou, rule)
        found_by[rule] = [
            category(instance.is_person,
                     is_person_label(kept[pairs[g]]["label"], settings.person_label)
                     if g in pairs else None)
            for g, instance in enumerate(instances)]
        if rule == settings.matching:
            counts["matched"] += len(pairs)
    # What the other rule would have changed, in privacy terms: instances excluded by one only.
    for ours, theirs in zip(found_by["thresholded"], found_by["authors"], strict=True):
        ours_out, theirs_out = ours in EXCLUDED_CATEGORIES, theirs in EXCLUDED_CATEGORIES
        counts["excluded_only_by_thresholded"] += int(ours_out and not theirs_out)
        counts["excluded_only_by_authors"] += int(theirs_out and not ours_out)
    return [(instance.name, found)
            for instance, found in zip(instances, found_by[settings.matching], strict=True)
            if found is not None]


def categorize_person_image(gt_rle: dict[str, Any], dets: Sequence[Mapping[str, Any]],
                            height: int, width: int, settings: ExclusionSettings,
                            counts: dict[str, int]) -> str:
    """Detection-only mode: the category of one gallery image (always a person)."""
    kept = select_detections(dets, settings, counts)
    det_rles = [polygon_rle(d["mask_polygon"], height, width, counts) for d in kept]
    iou = mask_iou([gt_rle], det_rles)[0]
    if iou.size == 0:
        counts["no_detection"] += 1
        return UNDETECTED
    if iou.max() <= 0.0:
        counts["no_overlapping_detection"] += 1
        return UNDETECTED
    best = int(np.argmax(iou))  # first maximum: the higher confidence among equal IoU
    return category(True, is_person_label(kept[best]["label"], settings.person_label))


def _new_counts() -> dict[str, int]:
    return defaultdict(int, {k: 0 for k in COUNTERS})


def _result(assigned: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for name, found in assigned:
        result[found].append(name)
    return {c: sorted(names) for c, names in result.items()}


def summarize(result: Mapping[str, list[str]], counts: Mapping[str, int],
              **facts: Any) -> dict[str, Any]:
    excluded = set().union(*(result[c] for c in EXCLUDED_CATEGORIES))
    return {"categories": {c: len(result[c]) for c in CATEGORIES},
            "excluded": len(excluded), **dict(sorted(counts.items())), **facts}


def _check_keys(detections: Mapping[str, Any], known: set[str], det_path: Path | str,
                what: str) -> None:
    unknown = sorted(set(detections) - known)
    if unknown:
        raise WorkflowInputError(det_path, f"detections for {len(unknown)} image(s) that are "
                                           f"not {what}, e.g. {unknown[0]}")


def vis_instances(frame_index: Mapping[str, Any], frame_names: Mapping[tuple[Any, Any], str],
                  person_category: int, index_path: Path | str
                  ) -> dict[str, tuple[int, int, list[Instance]]]:
    """Ground truth per frame: {frame file name: (height, width, instances)}.

    ``frame_index`` is the split's ``fg_instances.json`` (one image per crop, frame-level
    size and segmentation); ``frame_names`` maps (video_id, frame_id) to the frame's file
    name in the split's ``instances.json``.
    """
    try:
        images = {image["id"]: image for image in frame_index["images"]}
        annotations = frame_index["annotations"]
    except (KeyError, TypeError) as exc:
        raise WorkflowInputError(index_path, f"not a crop index ({exc})") from exc
    frames: dict[str, tuple[int, int, list[Instance]]] = {}
    for annotation in annotations:
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise WorkflowInputError(index_path, f"annotation {annotation.get('id')} has no image")
        name = image["file_name"]
        key = (image.get("video_id"), image.get("frame_id"))
        if key not in frame_names:
            raise WorkflowInputError(index_path, f"crop {name}: video {key[0]} frame {key[1]} "
                                                 "is not a frame of the split")
        frame = frame_names[key]
        height, width = int(image["height"]), int(image["width"])
        mask = decode_segmentation(annotation.get("segmentation"), height, width,
                                   f"{index_path}: crop {name}")
        size = frames.setdefault(frame, (height, width, []))
        if size[:2] != (height, width):
            raise WorkflowInputError(index_path, f"crop {name}: frame {frame} is {height}x{width} "
                                                 f"here but {size[0]}x{size[1]} for another crop")
        size[2].append(Instance(name, annotation.get("category_id") == person_category,
                                encode(mask)))
    return frames


def frame_names_of(instances: Mapping[str, Any], path: Path | str) -> dict[tuple[Any, Any], str]:
    """(video_id, frame_id) -> file_name for a frame-level instances file."""
    try:
        return {(i["video_id"], i["frame_id"]): i["file_name"] for i in instances["images"]}
    except (KeyError, TypeError) as exc:
        raise WorkflowInputError(path, f"not a frame-level instances file ({exc})") from exc


def vis_exclusion(frame_index: Mapping[str, Any], instances: Mapping[str, Any],
                  detections: Mapping[str, list], masks: Mapping[str, list],
                  person_category: int, settings: ExclusionSettings, *,
                  crop_names: Iterable[str] | None = None,
                  paths: Mapping[str, Path | str] | None = None
                  ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Ground-truth mode over a VIS split: (exclusion lists by category, summary).

    ``paths`` (keys ``frame_index``, ``instances``, ``detections``, ``masks``) only name the
    files in error messages. ``crop_names``, when given, are the names the evaluation
    indexes (``fg_instances_cropped.json``); the ground truth must name exactly those.
    """
    from tqdm import tqdm

    paths = {"frame_index": "fg_instances.json", "instances": "instances.json",
             "detections": "detections", "masks": "masks", **(paths or {})}
    check_masks_match(detections, masks, paths["detections"], paths["masks"])
    names = frame_names_of(instances, paths["instances"])
    _check_keys(detections, set(names.values()), paths["detections"], "frames of the split")
    frames = vis_instances(frame_index, names, person_category, paths["frame_index"])
    if not frames:
        raise WorkflowInputError(paths["frame_index"], "no objects: an empty ground truth "
                                                       "would give an empty exclusion list")
    if crop_names is not None:
        gt_names = {i.name for _, _, group in frames.values() for i in group}
        crop_names = set(crop_names)
        if gt_names != crop_names:
            odd = sorted(gt_names ^ crop_names)
            raise WorkflowInputError(paths["frame_index"], f"{len(odd)} crop name(s) differ from "
                                                           f"the cropped index, e.g. {odd[0]}")
    uncovered = sorted(set(frames) - set(detections))
    if uncovered:
        raise WorkflowInputError(paths["detections"], f"no detection entry for {len(uncovered)} "
                                                      f"frame(s) with objects, e.g. {uncovered[0]}; "
                                                      "re-run detection")
    for frame, (height, width, _) in frames.items():
        check_boxes_inside(masks.get(frame, []), width, height, paths["masks"], frame)
    counts = _new_counts()
    counts["matched"] = 0
    counts["excluded_only_by_thresholded"] = counts["excluded_only_by_authors"] = 0
    assigned: list[tuple[str, str]] = []
    for frame in tqdm(sorted(frames), desc="exclusion", unit="frame"):
        height, width, group = frames[frame]
        assigned += categorize_frame(group, masks.get(frame, []), height, width, settings, counts)
    result = _result(assigned)
    n_instances = sum(len(g) for _, _, g in frames.values())
    persons = sum(i.is_person for _, _, g in frames.values() for i in g)
    summary = summarize(result, counts, mode="ground_truth", matching=settings.matching,
                        frames=len(frames), instances=n_instances, persons=persons)
    return result, summary


def mgcam_mask_index(masks: ImageSource) -> dict[str, str]:
    """{file stem: mask name} of an MGCAM ``<folder>_seg/`` folder (PNG preferred)."""
    index: dict[str, str] = {}
    for name in image_names(masks):
        path = PurePosixPath(name)
        if path.stem not in index or path.suffix.lower() == ".png":
            index[path.stem] = name
    return index


def person_exclusion(image_root: Path | str, names: Sequence[str],
                     detections: Mapping[str, list], masks: Mapping[str, list],
                     settings: ExclusionSettings, *, gt_mask_dir: Path | str | None = None,
                     paths: Mapping[str, Path | str] | None = None
                     ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Detection-only mode over a person gallery: (exclusion lists by category, summary).

    The ground-truth person mask of ``<name>`` is the MGCAM mask ``gt_mask_dir/<stem>.png``
    (same size as the image) or, without ``gt_mask_dir``, the whole image.
    """
    from tqdm import tqdm

    gallery = open_images(image_root)
    image_root = gallery.path
    if not names:
        raise WorkflowInputError(image_root, "no gallery images: an empty gallery would give "
                                             "an empty exclusion list")
    paths = {"detections": "detections", "masks": "masks", **(paths or {})}
    check_masks_match(detections, masks, paths["detections"], paths["masks"])
    _check_keys(detections, set(names), paths["detections"], f"images of {image_root}")
    uncovered = sorted(set(names) - set(detections))
    if uncovered:
        raise WorkflowInputError(paths["detections"], f"no detection entry for {len(uncovered)} "
                                                      f"image(s), e.g. {uncovered[0]}; re-run "
                                                      "detection")
    gt_masks = open_images(gt_mask_dir) if gt_mask_dir is not None else None
    mask_files = mgcam_mask_index(gt_masks) if gt_masks is not None else None
    counts = _new_counts()
    counts["no_detection"] = counts["no_overlapping_detection"] = 0
    assigned = []
    for name in tqdm(sorted(names), desc="exclusion", unit="img"):
        check_image(gallery, name, image_root, f"image {name!r}")
        width, height = image_header_size(gallery, name)
        check_boxes_inside(masks.get(name, []), width, height, paths["masks"], name)
        if mask_files is None:
            gt = np.ones((height, width), dtype=np.uint8)
        else:
            stem = PurePosixPath(name).stem
            if stem not in mask_files:
                raise WorkflowInputError(Path(gt_mask_dir) / f"{stem}.png",
                                         f"no MGCAM mask for gallery image {name}")
            assert gt_masks is not None
            where = gt_masks.where(mask_files[stem])
            gt = mask_from_bytes(gt_masks.read_bytes(mask_files[stem]), where)
            if gt.shape != (height, width):
                raise WorkflowInputError(where, f"mask is {gt.shape[0]}x{gt.shape[1]}, "
                                                f"image {name} is {height}x{width}")
        assigned.append((name, categorize_person_image(encode(gt), masks.get(name, []), height,
                                                       width, settings, counts)))
    result = _result(assigned)
    summary = summarize(result, counts, mode="detection_only", images=len(names),
                        instances=len(names), persons=len(names),
                        gt_mask="mgcam" if mask_files is not None else "whole_image")
    return result, summary


def settings_from(exclusion_cfg: Mapping[str, Any], person_label: str) -> ExclusionSettings:
    return ExclusionSettings(nms_iou=exclusion_cfg["nms_iou"],
                             min_confidence=exclusion_cfg["min_confidence"],
                             match_iou=exclusion_cfg["match_iou"], person_label=person_label,
                             matching=exclusion_cfg["matching"])


def write_exclusion(result: Mapping[str, list[str]], summary: Mapping[str, Any],
                    out: Path | str, summary_out: Path | str) -> None:
    write_json(out, dict(result))
    write_json(summary_out, dict(summary))


def run_vis_exclusion(frame_index: Path | str, cropped_index: Path | str, instances: Path | str,
                      detections: Path | str, masks: Path | str, person_category: int,
                      settings: ExclusionSettings, out: Path | str,
                      summary_out: Path | str) -> dict[str, Any]:
    """The ``exclusion`` rule for a VIS split (ground-truth mode)."""
    cropped = read_json(cropped_index)
    try:
        crop_names = [image["file_name"] for image in cropped["images"]]
    except (KeyError, TypeError) as exc:
        raise WorkflowInputError(cropped_index, f"no images[].file_name ({exc})") from exc
    result, summary = vis_exclusion(
        read_json(frame_index), read_json(instances), load_detections(detections),
        load_masks(masks), person_category, settings, crop_names=crop_names,
        paths={"frame_index": frame_index, "instances": instances, "detections": detections,
               "masks": masks})
    write_exclusion(result, summary, out, summary_out)
    return summary


def run_person_exclusion(image_root: Path | str, detections: Path | str, masks: Path | str,
                         settings: ExclusionSettings, out: Path | str, summary_out: Path | str,
                         gt_mask_dir: Path | str | None = None) -> dict[str, Any]:
    """The ``exclusion`` rule for a person gallery (detection-only mode)."""
    result, summary = person_exclusion(
        image_root, image_names(open_images(image_root)), load_detections(detections),
        load_masks(masks), settings, gt_mask_dir=gt_mask_dir,
        paths={"detections": detections, "masks": masks})
    write_exclusion(result, summary, out, summary_out)
    return summary

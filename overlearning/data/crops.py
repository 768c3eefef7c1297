"""Foreground crops of every annotated object in a frame-level instances file.

For each annotation: the frame is cropped to ``int(x), int(y), int(w), int(h)`` of its bbox
(zero padding past the border, like torchvision's ``crop``), multiplied by the object's
mask cropped the same way (black background), and encoded as
``<video>/<frame stem without img_>_<object id>.<ext>``: a member of the pack
``foregroundImages_cropped.zip`` (overlearning/core/packs.py; unzipped, it is the study's
``foregroundImages_cropped/`` folder, byte for byte). Two indexes go beside the pack: ``fg_instances_cropped.json`` (crop-level sizes, bbox and
mask, plus ``bbox_prev``) and ``fg_instances.json`` (frame-level sizes, bbox and mask).
A crop's image id is the 1-based position of its annotation in the instances file, as in
the study, so ids in both indexes agree and a skipped crop leaves a gap.

Annotations are grouped by frame once, each frame is decoded once, and frames are cropped
in a thread pool (decoding, encoding and pycocotools release the GIL for most of the work);
the pack is written in the instances file's frame order by the main thread.

The input checks (schema, ids, boxes, every frame path contained in its root, every crop
name relative and unique) run once per annotation or frame, before any frame is read,
and cost a small share of the cropping: the schema is checked by a plain pre-check
(jsonschema words the error when there is one), a frame path costs one ``lstat``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from overlearning.core.atomic import read_json, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import DEFAULT_JPEG_QUALITY, encode_image
from overlearning.core.masks import decode_segmentation, encode_mask
from overlearning.core.packs import (
    PACK_SUFFIX,
    ImageSource,
    check_image,
    open_images,
    write_pack,
)
from overlearning.core.parallel import ordered_parallel_map
from overlearning.core.paths import check_relative
from overlearning.core.validate import box_tolerance, check_schema, is_number, unique_ids

log = logging.getLogger(__name__)

CROP_DIR = "foregroundImages_cropped"
CROP_PACK = CROP_DIR + PACK_SUFFIX
CROPPED_INDEX = "fg_instances_cropped.json"
FRAME_INDEX = "fg_instances.json"
# Frames handed to a crop thread at a time (a frame is a fraction of a millisecond of work;
# one hand-over per frame cost more wall time than the cropping on a loaded machine).
_FRAMES_PER_BATCH = 32
_ANNOTATION_KEYS = ("id", "object_id", "video_id", "image_id", "category_id", "segmentation",
                    "bbox")
_ID = {"type": "integer"}
# The frame-level instances file (written by vis_frames / vis_split, or given by hand).
FRAME_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["images", "annotations", "categories"],
    "properties": {
        "images": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "video_id", "frame_id", "width", "height", "file_name"],
            "properties": {"id": _ID, "video_id": _ID, "frame_id": _ID,
                           "width": {"type": "integer", "minimum": 1},
                           "height": {"type": "integer", "minimum": 1},
                           "file_name": {"type": "string", "minLength": 1}}}},
        "annotations": {"type": "array", "items": {
            "type": "object",
            "required": list(_ANNOTATION_KEYS),
            "properties": {"id": _ID, "object_id": _ID, "video_id": _ID, "image_id": _ID,
                           "category_id": _ID, "bbox": {"type": "array"},
                           "segmentation": {"type": ["object", "array"]}}}},
        "categories": {"type": "array", "items": {
            "type": "object", "required": ["id"], "properties": {"id": _ID}}},
    },
}


def crop_window(pixels: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    """The ``h x w`` window at (x, y) of ``pixels``; parts outside the array are zero."""
    out = np.zeros((h, w) + pixels.shape[2:], dtype=pixels.dtype)
    height, width = pixels.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 > x0 and y1 > y0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = pixels[y0:y1, x0:x1]
    return out


def foreground_crop(pixels: np.ndarray, mask: np.ndarray,
                    window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(masked crop H x W x C, cropped mask H x W) of one object."""
    crop = crop_window(pixels, *window)
    crop_mask = crop_window(mask, *window)
    return crop * crop_mask[..., None], crop_mask


def crop_file_name(frame_file_name: str, object_id: int, ext: str) -> str:
    """``vid/img_0000001.jpg`` + 7 -> ``vid/0000001_7.<ext>`` (paths stay '/'-separated)."""
    head, _, leaf = frame_file_name.rpartition("/")
    dot = leaf.rfind(".")
    if (0 < dot < len(leaf) - 1 and leaf not in (".", "..") and not head.startswith("/")
            and "//" not in frame_file_name and "." not in head.split("/")):
        # What PurePosixPath gives for a plain name, without its parsing (once per crop).
        stem = leaf[:dot].removeprefix("img_")
        return f"{head}/{stem}_{object_id}.{ext}" if head else f"{stem}_{object_id}.{ext}"
    path = PurePosixPath(frame_file_name)
    stem = path.stem.removeprefix("img_")
    return str(path.with_name(f"{stem}_{object_id}.{ext}"))


def bbox_window(bbox: Any, where: object) -> tuple[int, int, int, int]:
    """Integer crop window of a COCO ``[x, y, w, h]`` box (truncated like ``int()``)."""
    if (not isinstance(bbox, list | tuple) or len(bbox) != 4
            or not all(is_number(v) for v in bbox)):
        raise WorkflowInputError(where, f"bbox must be 4 finite numbers, got {bbox!r}")
    x, y, w, h = (int(v) for v in bbox)
    if w < 0 or h < 0:
        raise WorkflowInputError(where, f"bbox has negative size {bbox!r}")
    return x, y, w, h


@dataclass(frozen=True)
class _Job:
    """One frame and the crops to cut from it (crop id, annotation, crop name, window)."""

    image: dict[str, Any]
    crops: list[tuple[int, dict[str, Any], str, tuple[int, int, int, int]]]


def _plan(instances: dict[str, Any], where: object, ext: str, object_offset: int,
          frames: ImageSource) -> tuple[list[_Job], list[int]]:
    """Group annotations by frame, name every crop, find the zero-size ones.

    Every frame path must stay inside the frames' root (or be a member of their archive)
    and every crop name must be a plain relative name: both are checked here, once per
    frame and per crop, before any frame is read or any crop written.
    """
    check_schema(instances, FRAME_JSON_SCHEMA, where)
    unique_ids(instances["images"], "id", where, "$.images")
    unique_ids(instances["annotations"], "id", where, "$.annotations")
    images_by_id = {image["id"]: image for image in instances["images"]}
    position_of = {image["id"]: i for i, image in enumerate(instances["images"])}
    category_ids = {c["id"] for c in instances["categories"]}
    jobs_by_image: dict[Any, _Job] = {}
    skipped: list[int] = []
    names: set[str] = set()
    checked: set[Any] = set()
    for position, annotation in enumerate(instances["annotations"], start=1):
        what = f"{where}: annotation {annotation.get('id')}"
        image = images_by_id.get(annotation.get("image_id"))
        if image is None:
            raise WorkflowInputError(what, f"unknown image id {annotation.get('image_id')}")
        if annotation.get("category_id") not in category_ids:
            raise WorkflowInputError(what, f"unknown category id {annotation.get('category_id')}")
        window = bbox_window(annotation.get("bbox"), what)
        if window[2] > image["width"] + box_tolerance(image["width"]) \
                or window[3] > image["height"] + box_tolerance(image["height"]):
            # Past the border is padded black (as the study did), but a box larger than
            # its frame would allocate a crop of any size the file asks for.
            raise WorkflowInputError(
                where, f"$.annotations[{position - 1}].bbox: expected a box no larger than its "
                       f"{image['width']}x{image['height']} frame, found {annotation['bbox']!r}")
        if window[2] == 0 or window[3] == 0:
            skipped.append(annotation["id"])
            continue
        entry = f"$.images[{position_of[image['id']]}].file_name"
        if image["id"] not in checked:
            check_image(frames, image["file_name"], where, entry)
            checked.add(image["id"])
        name = crop_file_name(image["file_name"], annotation["object_id"] + object_offset, ext)
        check_relative(name, where, entry)
        if name in names:
            raise WorkflowInputError(what, f"two annotations give the same crop {name}")
        names.add(name)
        job = jobs_by_image.setdefault(image["id"], _Job(image, []))
        job.crops.append((position, annotation, name, window))
    if not jobs_by_image:
        raise WorkflowInputError(
            where, f"$.annotations: expected at least one annotation to crop, found "
                   f"{len(instances['annotations'])} ({len(skipped)} of zero size); the "
                   "split or the dataset has no usable annotation")
    return list(jobs_by_image.values()), skipped


def make_crops(instances_path: Path | str, images_root: Path | str | ImageSource,
               out_dir: Path | str, *,
               ext: str = "jpg", quality: int = DEFAULT_JPEG_QUALITY, object_offset: int = 0,
               threads: int = 1) -> dict[str, int]:
    """Write ``out_dir/{foregroundImages_cropped.zip, fg_instances_cropped.json, fg_instances.json}``.

    ``images_root`` is the frames' folder, a folder inside downloads read in place (a path
    through ``{D}/raw/<dataset>.json``), or a reader of either.
    ``object_offset`` is added to every object id (OVIS: the YouTube-VIS object count).
    Returns counts (crops written, zero-size crops skipped, frames read).
    """
    instances_path, out_dir = Path(instances_path), Path(out_dir)
    frames = open_images(images_root)
    instances = read_json(instances_path)
    jobs, skipped = _plan(instances, instances_path, ext, object_offset, frames)
    suffix = "." + ext

    def cut(job: _Job) -> list[tuple[bytes, dict[str, Any], bool]]:
        # Checked in _plan; the reader checks it again as it opens it (links may change).
        name = job.image["file_name"]
        pixels = frames.read_rgb(name)
        height, width = pixels.shape[:2]
        if (height, width) != (job.image["height"], job.image["width"]):
            raise WorkflowInputError(
                frames.where(name), f"frame is {height}x{width} but {instances_path.name} "
                                    f"says {job.image['height']}x{job.image['width']}")
        out = []
        for _, annotation, _, window in job.crops:
            where = f"{instances_path}: annotation {annotation['id']} ({name})"
            mask = decode_segmentation(annotation["segmentation"], height, width, where)
            crop, crop_mask = foreground_crop(pixels, mask, window)
            out.append((encode_image(crop, suffix, quality), encode_mask(crop_mask),
                        bool(crop_mask.any())))
        return out

    crop_masks: dict[int, dict[str, Any]] = {}
    empty: list[int] = []
    with write_pack(out_dir / CROP_PACK) as pack:
        results = ordered_parallel_map(cut, jobs, threads, len(jobs), f"crops {out_dir.name}",
                                       batch=_FRAMES_PER_BATCH)
        for job, crops in zip(jobs, results, strict=True):
            for (crop_id, annotation, name, _), (data, mask, visible) in zip(
                    job.crops, crops, strict=True):
                pack.add(name, data)
                crop_masks[crop_id] = mask
                if not visible:
                    empty.append(annotation["id"])

        cropped, framed = _indexes(instances, crop_masks, ext, object_offset)
        write_json(out_dir / CROPPED_INDEX, cropped)
        write_json(out_dir / FRAME_INDEX, framed)

    if skipped:
        shown = ", ".join(map(str, skipped[:20])) + (" ..." if len(skipped) > 20 else "")
        log.info("skipped %d zero-size crop(s), annotation ids: %s", len(skipped), shown)
    if empty:
        # Kept (the study kept them too), but worth knowing: the mask misses its own box.
        shown = ", ".join(map(str, empty[:20])) + (" ..." if len(empty) > 20 else "")
        log.info("%d crop(s) with an empty mask (all black), annotation ids: %s", len(empty), shown)
    stats = {"crops": len(crop_masks), "skipped_zero_size": len(skipped), "frames": len(jobs),
             "empty_mask": len(empty)}
    log.info("%s: %d crops from %d frames, %d zero-size skipped", out_dir, stats["crops"],
             stats["frames"], stats["skipped_zero_size"])
    return stats


def _indexes(instances: dict[str, Any], crop_masks: dict[int, dict[str, Any]], ext: str,
             object_offset: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The crop-level and frame-level indexes, in the instances file's annotation order."""
    images_by_id = {image["id"]: image for image in instances["images"]}
    cropped_images, cropped_annotations, frame_images, frame_annotations = [], [], [], []
    for crop_id, annotation in enumerate(instances["annotations"], start=1):
        if crop_id not in crop_masks:
            continue
        image = images_by_id[annotation["image_id"]]
        object_id = annotation["object_id"] + object_offset
        name = crop_file_name(image["file_name"], object_id, ext)
        _, _, w, h = bbox_window(annotation["bbox"], "")
        common_image = {"id": crop_id, "video_id": image["video_id"],
                        "frame_id": image["frame_id"], "file_name": name}
        common_annotation = {"id": annotation["id"], "object_id": object_id,
                             "video_id": annotation["video_id"], "image_id": crop_id,
                             "category_id": annotation["category_id"],
                             "area": annotation.get("area"), "iscrowd": annotation.get("iscrowd", 0)}
        cropped_images.append({**common_image, "width": w, "height": h})
        cropped_annotations.append({
            **common_annotation,
            "segmentation": crop_masks[crop_id],
            "bbox": [0.0, 0.0, annotation["bbox"][2], annotation["bbox"][3]],
            "bbox_prev": annotation["bbox"],
        })
        frame_images.append({**common_image, "width": image["width"], "height": image["height"]})
        frame_annotations.append({**common_annotation, "segmentation": annotation["segmentation"],
                                  "bbox": annotation["bbox"]})
    videos = instances.get("videos", [])
    categories = instances["categories"]
    return ({"videos": videos, "images": cropped_images, "annotations": cropped_annotations,
             "categories": categories},
            {"videos": videos, "images": frame_images, "annotations": frame_annotations,
             "categories": categories})

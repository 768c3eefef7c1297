"""Video-level VIS annotations (YouTube-VIS, OVIS) to frame-level COCO-style instances.

Images are numbered from 1 in video order, then frame order; every non-null per-frame
segmentation becomes one annotation, numbered from 1. ``object_id`` is the 1-based position
of the object in the video-level ``annotations`` list, so it is unique in the dataset and
becomes the crop's label. Frames are indexed by (video id, frame index) once, so the
conversion is linear in the number of annotations (the study's version searched the image
list for every annotation).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from overlearning.core.atomic import read_json, write_json
from overlearning.core.errors import WorkflowInputError

log = logging.getLogger(__name__)

_VIDEO_KEYS = ("id", "width", "height", "file_names")
_OBJECT_KEYS = ("video_id", "category_id", "segmentations", "bboxes", "areas")


def _check_keys(entry: Any, keys: tuple[str, ...], where: str, what: str) -> None:
    if not isinstance(entry, dict):
        raise WorkflowInputError(where, f"{what} is not an object")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise WorkflowInputError(where, f"{what} lacks {', '.join(missing)}")


def videos_to_frames(video_json: dict[str, Any], where: object = "<video json>") -> dict[str, Any]:
    """Frame-level ``{videos, images, annotations, categories}`` of one video-level JSON.

    ``where`` names the source file in error messages.
    """
    where = str(where)
    if not isinstance(video_json, dict):
        raise WorkflowInputError(where, "top level is not a JSON object")
    for key in ("videos", "annotations", "categories"):
        if not isinstance(video_json.get(key), list):
            raise WorkflowInputError(where, f"top-level '{key}' list missing")
    categories = video_json["categories"]
    category_ids = {c.get("id") for c in categories if isinstance(c, dict)}

    images: list[dict[str, Any]] = []
    # (video id, frame index) -> image id, and video id -> its frame count: built once.
    image_id_of: dict[tuple[Any, int], int] = {}
    frames_of: dict[Any, int] = {}
    for v, video in enumerate(video_json["videos"]):
        _check_keys(video, _VIDEO_KEYS, where, f"videos[{v}]")
        if video["id"] in frames_of:
            raise WorkflowInputError(where, f"videos[{v}]: duplicate video id {video['id']}")
        names = video["file_names"]
        if "length" in video and video["length"] != len(names):
            raise WorkflowInputError(
                where, f"video {video['id']}: length {video['length']} but "
                       f"{len(names)} file_names")
        frames_of[video["id"]] = len(names)
        for frame_id, file_name in enumerate(names):
            image_id = len(images) + 1
            image_id_of[(video["id"], frame_id)] = image_id
            images.append({"id": image_id, "video_id": video["id"], "frame_id": frame_id,
                           "width": video["width"], "height": video["height"],
                           "file_name": file_name})

    annotations: list[dict[str, Any]] = []
    for object_id, obj in enumerate(video_json["annotations"], start=1):
        what = f"annotations[{object_id - 1}]"
        _check_keys(obj, _OBJECT_KEYS, where, what)
        video_id = obj["video_id"]
        if video_id not in frames_of:
            raise WorkflowInputError(where, f"{what}: unknown video id {video_id}")
        if obj["category_id"] not in category_ids:
            raise WorkflowInputError(where, f"{what}: unknown category id {obj['category_id']}")
        lengths = {k: len(obj[k]) for k in ("segmentations", "bboxes", "areas")}
        lengths["frames of its video"] = frames_of[video_id]
        if len(set(lengths.values())) != 1:
            detail = ", ".join(f"{k} {n}" for k, n in lengths.items())
            raise WorkflowInputError(where, f"{what}: lists of different lengths ({detail})")
        for frame_id, segmentation in enumerate(obj["segmentations"]):
            if segmentation is None:
                continue
            bbox, area = obj["bboxes"][frame_id], obj["areas"][frame_id]
            if bbox is None or area is None:
                raise WorkflowInputError(
                    where, f"{what}: frame {frame_id} has a segmentation but no bbox/area")
            annotations.append({
                "id": len(annotations) + 1,
                "object_id": object_id,
                "video_id": video_id,
                "image_id": image_id_of[(video_id, frame_id)],
                "category_id": obj["category_id"],
                "segmentation": segmentation,
                "area": area,
                "bbox": bbox,
                "iscrowd": obj.get("iscrowd", 0),
            })
    return {"videos": video_json["videos"], "images": images, "annotations": annotations,
            "categories": categories}


def convert_video_annotations(source: Path | str, out: Path | str,
                              objects_out: Path | str | None = None) -> dict[str, int]:
    """Read a video-level JSON, write its frame-level form; optionally its object count.

    The object count (length of the video-level ``annotations`` list) is what OVIS labels
    are offset by, so the two label sets never collide.
    """
    video_json = read_json(source)
    frames = videos_to_frames(video_json, where=source)
    stats = {"videos": len(frames["videos"]), "images": len(frames["images"]),
             "annotations": len(frames["annotations"]),
             "objects": len(video_json["annotations"])}
    write_json(out, frames)
    if objects_out is not None:
        write_json(objects_out, {"object_count": stats["objects"]})
    log.info("%s: %d videos, %d frames, %d frame annotations", source, stats["videos"],
             stats["images"], stats["annotations"])
    return stats


def read_object_count(path: Path | str) -> int:
    """The object count written by :func:`convert_video_annotations`."""
    data = read_json(path)
    count = data.get("object_count") if isinstance(data, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise WorkflowInputError(path, "needs a non-negative integer 'object_count'")
    return count

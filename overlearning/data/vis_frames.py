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

from overlearning.core.atomic import parse_json, read_json, write_json
from overlearning.core.packs import read_file_at
from overlearning.core.errors import WorkflowInputError
from overlearning.core.masks import check_segmentation
from overlearning.core.paths import check_relative
from overlearning.core.validate import check_schema, check_xywh, fail, is_number, unique_ids

log = logging.getLogger(__name__)

# The video-level format (YouTube-VIS 2019/2021, OVIS) as far as this workflow relies on it.
# Per-frame entries are checked while converting, where the frame size is at hand (box
# inside the frame, mask of the frame's size, area a non-negative number).
VIDEO_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["videos", "annotations", "categories"],
    "properties": {
        "videos": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "width", "height", "file_names"],
            "properties": {
                "id": {"type": "integer"},
                "width": {"type": "integer", "minimum": 1},
                "height": {"type": "integer", "minimum": 1},
                "length": {"type": "integer", "minimum": 0},
                "file_names": {"type": "array"},  # each checked by check_relative
            }}},
        "categories": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}},
        "annotations": {"type": "array", "items": {
            "type": "object",
            "required": ["video_id", "category_id", "segmentations", "bboxes", "areas"],
            "properties": {
                "id": {"type": "integer"},
                "video_id": {"type": "integer"},
                "category_id": {"type": "integer"},
                "iscrowd": {"type": "integer", "minimum": 0, "maximum": 1},
                # Per-frame entries: checked while converting (typing every one of them
                # here would cost ten times the conversion on the full dataset).
                "segmentations": {"type": "array"},
                "bboxes": {"type": "array"},
                "areas": {"type": "array"},
            }}},
    },
}


def check_person_category(categories: list[dict[str, Any]], person_category: int,
                          where: object) -> None:
    """The configured person id must be named ``person`` (any case: OVIS says ``Person``).

    YouTube-VIS 2019 and 2021 number their categories differently (person is 1 in 2019,
    26 in 2021, where 1 is airplane); a file of the other edition must not pass silently.
    """
    names = {c["id"]: c["name"] for c in categories}
    persons = sorted(i for i, n in names.items() if n.lower() == "person")
    if names.get(person_category, "").lower() != "person":
        found = (f"category {person_category} is {names[person_category]!r}"
                 if person_category in names else f"no category {person_category}")
        there = f"'person' is id {persons[0]} in this file" if persons else "no 'person' category"
        raise WorkflowInputError(
            where, f"$.categories: expected the configured person category id {person_category} "
                   f"to be named 'person', found {found} ({there}; another edition of the "
                   "dataset, or the wrong *_person_category in the config?)")


def videos_to_frames(video_json: dict[str, Any], where: object = "<video json>",
                     person_category: int | None = None) -> dict[str, Any]:
    """Frame-level ``{videos, images, annotations, categories}`` of one video-level JSON.

    ``where`` names the source file in error messages; ``person_category`` (if given) must
    be the id of the category named ``person`` in the file.
    """
    where = str(where)
    check_schema(video_json, VIDEO_JSON_SCHEMA, where)
    categories = video_json["categories"]
    unique_ids(categories, "id", where, "$.categories")
    unique_ids(video_json["videos"], "id", where, "$.videos")
    unique_ids(video_json["annotations"], "id", where, "$.annotations")
    if person_category is not None:
        check_person_category(categories, person_category, where)
    category_ids = {c["id"] for c in categories}

    images: list[dict[str, Any]] = []
    # (video id, frame index) -> image id, and video id -> its video: built once.
    image_id_of: dict[tuple[Any, int], int] = {}
    video_of: dict[Any, dict[str, Any]] = {}
    seen_names: dict[str, str] = {}
    for v, video in enumerate(video_json["videos"]):
        names = video["file_names"]
        if "length" in video and video["length"] != len(names):
            raise WorkflowInputError(
                where, f"$.videos[{v}].length: expected {len(names)} (the number of "
                       f"file_names), found {video['length']}")
        video_of[video["id"]] = video
        for frame_id, file_name in enumerate(names):
            entry = f"$.videos[{v}].file_names[{frame_id}]"
            # Frame names are joined to the image root later: refuse escapes here already.
            check_relative(file_name, where, entry)
            if file_name in seen_names:
                raise WorkflowInputError(where, f"{entry}: expected a unique frame name, found "
                                                f"{file_name!r} also at {seen_names[file_name]}")
            seen_names[file_name] = entry
            image_id = len(images) + 1
            image_id_of[(video["id"], frame_id)] = image_id
            images.append({"id": image_id, "video_id": video["id"], "frame_id": frame_id,
                           "width": video["width"], "height": video["height"],
                           "file_name": file_name})

    annotations: list[dict[str, Any]] = []
    for object_id, obj in enumerate(video_json["annotations"], start=1):
        what = f"$.annotations[{object_id - 1}]"
        video_id = obj["video_id"]
        if video_id not in video_of:
            raise WorkflowInputError(where, f"{what}.video_id: expected one of the videos' ids, "
                                            f"found {video_id!r}")
        if obj["category_id"] not in category_ids:
            raise WorkflowInputError(where, f"{what}.category_id: expected one of the "
                                            f"categories' ids, found {obj['category_id']!r}")
        video = video_of[video_id]
        width, height = video["width"], video["height"]
        lengths = {k: len(obj[k]) for k in ("segmentations", "bboxes", "areas")}
        lengths["frames of its video"] = len(video["file_names"])
        if len(set(lengths.values())) != 1:
            detail = ", ".join(f"{k} {n}" for k, n in lengths.items())
            raise WorkflowInputError(where, f"{what}: expected lists as long as its video, "
                                            f"found {detail}")
        for frame_id, segmentation in enumerate(obj["segmentations"]):
            if segmentation is None:
                continue
            bbox, area = obj["bboxes"][frame_id], obj["areas"][frame_id]
            if bbox is None or area is None:
                raise WorkflowInputError(
                    where, f"{what}: expected a bbox and an area beside the segmentation of "
                           f"frame {frame_id}, found {'no bbox' if bbox is None else 'no area'}")
            check_xywh(bbox, width, height, where, f"{what}.bboxes[{frame_id}]")
            if not is_number(area) or area < 0:
                raise fail(where, f"{what}.areas[{frame_id}]", "a finite number >= 0", area)
            check_segmentation(segmentation, height, width, where,
                               f"{what}.segmentations[{frame_id}]")
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
    if not annotations:
        raise WorkflowInputError(where, "$.annotations: expected at least one object with a "
                                        f"segmentation in some frame, found none in "
                                        f"{len(video_json['annotations'])} object(s)")
    return {"videos": video_json["videos"], "images": images, "annotations": annotations,
            "categories": categories}


def convert_video_annotations(source: Path | str, out: Path | str,
                              objects_out: Path | str | None = None,
                              person_category: int | None = None) -> dict[str, int]:
    """Read a video-level JSON, write its frame-level form; optionally its object count.

    The object count (length of the video-level ``annotations`` list) is what OVIS labels
    are offset by, so the two label sets never collide. ``source`` may lead into downloads
    read in place (``{D}/raw/<dataset>.json/train/instances.json``).
    """
    if Path(source).is_file():
        video_json = read_json(source)
    else:
        data, where = read_file_at(source)
        video_json = parse_json(data, where)
    frames = videos_to_frames(video_json, where=source, person_category=person_category)
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

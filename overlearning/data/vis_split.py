"""The study's video-level train / valid / test split of YouTube-VIS.

Videos, in the JSON's order, each carrying its frames and annotations, are shuffled with
``random.seed(seed); random.shuffle(...)`` and cut at ``int(c1 * n)`` and ``int(c2 * n)``.
On the same input this gives the study's split. Frames and annotations are paired with
their video by id; the study paired the i-th run of frames with the i-th run of
annotations, so one video without annotations shifted every later pair.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from overlearning.core.atomic import read_json, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.validate import check_schema

_ID = {"type": "integer"}
_KEYED = {"type": "array", "items": {"type": "object", "required": ["id", "video_id"],
                                     "properties": {"id": _ID, "video_id": _ID}}}
# frames.json as far as the split relies on it (vis_crops checks the rest).
SPLIT_INPUT_SCHEMA = {
    "type": "object",
    "required": ["videos", "images", "annotations", "categories"],
    "properties": {"videos": {"type": "array", "items": {"type": "object", "required": ["id"],
                                                         "properties": {"id": _ID}}},
                   "images": _KEYED, "annotations": _KEYED, "categories": {"type": "array"}},
}

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def shuffled_video_order(video_ids: list[Any], seed: int) -> list[Any]:
    """The study's seeded shuffle (a fresh ``random.seed``, then ``random.shuffle``).

    A private ``random.Random`` gives the same sequence as the global functions without
    touching the caller's random state.
    """
    order = list(video_ids)
    random.Random(seed).shuffle(order)
    return order


def cut_points(n: int, cuts: tuple[float, float] | list[float]) -> tuple[int, int]:
    first, second = cuts
    if not 0.0 <= first <= second <= 1.0:
        raise ValueError(f"split cut points must satisfy 0 <= {first} <= {second} <= 1")
    return int(first * n), int(second * n)


def split_frames(frames: dict[str, Any], cuts: tuple[float, float] | list[float],
                 seed: int, where: object = "<frames>") -> dict[str, dict[str, Any]]:
    """``{split: frame-level instances}``; the order inside a split is the shuffled order."""
    videos = frames["videos"]
    images_of: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    annotations_of: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    video_by_id = {video["id"]: video for video in videos}
    for image in frames["images"]:
        if image["video_id"] not in video_by_id:
            raise WorkflowInputError(where, f"image {image['id']}: unknown video {image['video_id']}")
        images_of[image["video_id"]].append(image)
    for annotation in frames["annotations"]:
        if annotation["video_id"] not in video_by_id:
            raise WorkflowInputError(
                where, f"annotation {annotation['id']}: unknown video {annotation['video_id']}")
        annotations_of[annotation["video_id"]].append(annotation)

    order = shuffled_video_order([video["id"] for video in videos], seed)
    first, second = cut_points(len(order), cuts)
    parts = {"train": order[:first], "valid": order[first:second], "test": order[second:]}
    return {
        name: {
            "videos": [video_by_id[v] for v in ids],
            "images": [image for v in ids for image in images_of[v]],
            "annotations": [a for v in ids for a in annotations_of[v]],
            "categories": frames["categories"],
        }
        for name, ids in parts.items()
    }


def split_frames_file(frames_path: Path | str, outputs: dict[str, Path | str],
                      cuts: tuple[float, float] | list[float], seed: int) -> dict[str, int]:
    """Split ``frames.json`` into ``outputs[split]`` (one instances.json per split)."""
    frames = read_json(frames_path)
    check_schema(frames, SPLIT_INPUT_SCHEMA, frames_path)
    parts = split_frames(frames, cuts, seed, where=frames_path)
    empty = [name for name in SPLITS if not parts[name]["annotations"]]
    if empty:
        # Training, validation and evaluation each need objects: an empty split means
        # too few (annotated) videos for the cut points, not a result to carry on with.
        raise WorkflowInputError(
            frames_path, f"split {', '.join(empty)}: expected annotated videos in every split, "
                         f"found none ({len(frames['videos'])} videos, "
                         f"{len(frames['annotations'])} annotations, cuts {list(cuts)})")
    counts = {}
    for name in SPLITS:
        write_json(outputs[name], parts[name])
        part = parts[name]
        counts[name] = len(part["videos"])
        log.info("%s: %d videos, %d frames, %d annotations", name, len(part["videos"]),
                 len(part["images"]), len(part["annotations"]))
    annotated = {a["video_id"] for a in frames["annotations"]}
    unannotated = sum(1 for v in frames["videos"] if v["id"] not in annotated)
    if unannotated:
        log.info("%d video(s) without annotations keep their place in the shuffle", unannotated)
    return counts

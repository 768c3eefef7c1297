"""Labelled image sets as the training and evaluation code sees them.

A VIS/OVIS crop's label is its object id (the last ``_`` part of the file stem); a CUHK03 /
Market image's label is the identity before the first ``_`` and its camera follows ``_c``.
Sets are sorted by file name so every consumer sees the same order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from overlearning.core.atomic import read_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import IMAGE_SUFFIXES
from overlearning.core.paths import contained
from overlearning.core.validate import check_schema

PersonFilter = Literal["all", "exclude", "only"]
_ID = {"type": "integer"}
# fg_instances_cropped.json as far as the sets rely on it.
CROP_INDEX_SCHEMA = {
    "type": "object",
    "required": ["images", "annotations"],
    "properties": {
        "images": {"type": "array", "items": {
            "type": "object", "required": ["id", "file_name"],
            "properties": {"id": _ID, "file_name": {"type": "string", "minLength": 1}}}},
        "annotations": {"type": "array", "items": {
            "type": "object", "required": ["image_id", "category_id"],
            "properties": {"image_id": _ID, "category_id": _ID}}},
    },
}
# Identity, then camera: what every person file name (CUHK03-NP and Market-1501) starts with.
_PERSON = re.compile(r"(-1|\d+)_c(\d+)")


@dataclass(frozen=True)
class Item:
    path: Path
    name: str  # relative to the set's image folder
    label: int
    is_person: bool
    camera: int = -1


def crop_label(name: str) -> int:
    stem = Path(name).stem
    try:
        return int(stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise WorkflowInputError(name, "crop file name does not end in _<object id>") from None


def load_crop_set(split_dir: Path | str, person_category: int,
                  persons: PersonFilter = "all") -> list[Item]:
    """Read ``<split_dir>/fg_instances_cropped.json`` and its ``foregroundImages_cropped/``."""
    split_dir = Path(split_dir)
    index_path = split_dir / "fg_instances_cropped.json"
    index = read_json(index_path)
    check_schema(index, CROP_INDEX_SCHEMA, index_path)
    category_of = {a["image_id"]: a["category_id"] for a in index["annotations"]}
    images = index["images"]
    root = split_dir / "foregroundImages_cropped"
    items = []
    for position, image in enumerate(images):
        if image["id"] not in category_of:
            raise WorkflowInputError(index_path, f"image {image['id']} has no annotation")
        is_person = category_of[image["id"]] == person_category
        if (persons == "exclude" and is_person) or (persons == "only" and not is_person):
            continue
        name = image["file_name"]
        path = contained(root, name, index_path, f"$.images[{position}].file_name")
        items.append(Item(path, name, crop_label(name), is_person))
    return sorted(items, key=lambda item: item.name)


def person_label(name: str) -> int:
    try:
        return int(Path(name).name.split("_", 1)[0])
    except ValueError:
        raise WorkflowInputError(name, "person image name does not start with <id>_") from None


def person_camera(name: str) -> int:
    """The camera after ``<id>_c``; a name without one stops (it used to become -1)."""
    match = _PERSON.match(Path(name).name)
    if match is None:
        raise WorkflowInputError(name, "person image name: expected <id>_c<camera>_..., "
                                       f"found {Path(name).name!r}")
    return int(match.group(2))


def load_person_folder(folder: Path | str) -> list[Item]:
    """All images of a person folder (query, gallery or probe), labelled by identity."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WorkflowInputError(folder, "person image folder not found")
    items = [
        Item(p, p.name, person_label(p.name), True, person_camera(p.name))
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(items, key=lambda item: item.name)

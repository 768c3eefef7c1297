"""Labelled image sets as the training and evaluation code sees them.

A VIS/OVIS crop's label is its object id (the last ``_`` part of the file stem); a CUHK03 /
Market image's label is the identity before the first ``_`` and its camera follows ``_c``.
Sets are sorted by file name so every consumer sees the same order.

The images live in packs (overlearning/core/packs.py): an :class:`Item` names its member
and holds the reader of its pack, which pickles into DataLoader workers as a path and
re-opens its file once per process. Building a set opens no image file: the crop index's
names are checked against the pack's member table (one dictionary look-up each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from overlearning.core.atomic import read_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import IMAGE_SUFFIXES
from overlearning.core.packs import PACK_SUFFIX, FolderImages, PackReader, open_pack
from overlearning.core.paths import check_relative
from overlearning.core.validate import check_schema

CROP_INDEX = "fg_instances_cropped.json"
CROP_PACK = "foregroundImages_cropped" + PACK_SUFFIX

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
    name: str  # the member name (relative to the set's image folder before packs)
    label: int
    is_person: bool
    camera: int = -1
    images: PackReader | FolderImages | None = field(default=None, compare=False, repr=False)

    def read_bytes(self) -> bytes:
        return self._images().read_bytes(self.name)

    def open_image(self) -> Image.Image:
        return self._images().open_image(self.name)

    def read_rgb(self) -> np.ndarray:
        return self._images().read_rgb(self.name)

    @property
    def where(self) -> str:
        """``<pack>:<member>``, how errors and logs name this image."""
        return self._images().where(self.name)

    def _images(self) -> PackReader | FolderImages:
        if self.images is None:
            raise ValueError(f"item {self.name!r} has no image source")
        return self.images


def crop_label(name: str) -> int:
    stem = Path(name).stem
    try:
        return int(stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise WorkflowInputError(name, "crop file name does not end in _<object id>") from None


def load_crop_set(split_dir: Path | str, person_category: int,
                  persons: PersonFilter = "all",
                  images: PackReader | None = None) -> list[Item]:
    """Read ``<split_dir>/fg_instances_cropped.json`` and its ``foregroundImages_cropped.zip``.

    ``images`` replaces the split's pack (a staged copy, an anonymised overlay); every name
    of the index must be one of its members.
    """
    split_dir = Path(split_dir)
    index_path = split_dir / CROP_INDEX
    index = read_json(index_path)
    check_schema(index, CROP_INDEX_SCHEMA, index_path)
    category_of = {a["image_id"]: a["category_id"] for a in index["annotations"]}
    images_of = index["images"]
    pack = images if images is not None else open_pack(split_dir / CROP_PACK)
    members = pack.table().keys() if pack.base is None else set(pack.names())
    items = []
    for position, image in enumerate(images_of):
        if image["id"] not in category_of:
            raise WorkflowInputError(index_path, f"image {image['id']} has no annotation")
        is_person = category_of[image["id"]] == person_category
        if (persons == "exclude" and is_person) or (persons == "only" and not is_person):
            continue
        name = image["file_name"]
        if name not in members:
            entry = f"$.images[{position}].file_name"
            check_relative(name, index_path, entry)
            raise WorkflowInputError(index_path, f"{entry}: {name!r} is not a member of "
                                                 f"{pack.path}")
        items.append(Item(name, crop_label(name), is_person, images=pack))
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


def load_person_set(pack: Path | str | PackReader) -> list[Item]:
    """All images of a person set's pack (query, gallery or probe), labelled by identity."""
    reader = pack if isinstance(pack, PackReader) else open_pack(pack)
    items = [
        Item(name, person_label(name), True, person_camera(name), images=reader)
        for name in reader.names()
        if Path(name).suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(items, key=lambda item: item.name)

"""The fast schema pre-check never lets through what jsonschema would refuse.

``check_schema`` asks jsonschema only when its plain recursive check has a doubt; for that
to keep every check, ``_surely_valid`` must answer True only for data that jsonschema
accepts. Checked on every data schema of the project, against random mutations of valid
documents (wrong types, missing keys, out-of-range numbers, booleans for integers).
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import pytest

from overlearning.core.validate import StrictValidator, _surely_valid
from overlearning.data.crop_sets import CROP_INDEX_SCHEMA
from overlearning.data.crops import FRAME_JSON_SCHEMA
from overlearning.data.vis_frames import VIDEO_JSON_SCHEMA
from overlearning.data.vis_split import SPLIT_INPUT_SCHEMA

_FRAMES = {
    "videos": [{"id": 1, "width": 8, "height": 6, "length": 1, "file_names": ["v/a.jpg"]}],
    "images": [{"id": 1, "video_id": 1, "frame_id": 0, "width": 8, "height": 6,
                "file_name": "v/a.jpg"}],
    "annotations": [{"id": 1, "object_id": 1, "video_id": 1, "image_id": 1, "category_id": 1,
                     "segmentation": {"size": [6, 8], "counts": [0, 48]}, "bbox": [0, 0, 2, 2],
                     "segmentations": [None], "bboxes": [None], "areas": [None],
                     "iscrowd": 0}],
    "categories": [{"id": 1, "name": "person"}],
}
SCHEMAS = {"frames": FRAME_JSON_SCHEMA, "split": SPLIT_INPUT_SCHEMA, "video": VIDEO_JSON_SCHEMA,
           "crop_index": CROP_INDEX_SCHEMA}
_REPLACEMENTS = [None, True, False, 0, 1, -1, 0.5, 1.0, math.inf, "", "x", [], {}, [1], {"a": 1}]


def _slots(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _slots(value, path + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _slots(value, path + (i,))
    return out


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_slots(doc)[1:])
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(_REPLACEMENTS))
    return doc


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_fast_check_accepts_only_what_jsonschema_accepts(name: str) -> None:
    schema = SCHEMAS[name]
    assert _surely_valid(_FRAMES, schema)
    assert not list(StrictValidator(schema).iter_errors(_FRAMES))
    rng = random.Random(0)
    doubted = 0
    for _ in range(3000):
        doc = _mutate(_FRAMES, rng)
        errors = list(StrictValidator(schema).iter_errors(doc))
        if _surely_valid(doc, schema):
            assert not errors, (doc, errors[0].message)
        else:
            doubted += 1
    assert doubted > 100  # the mutations did reach what the schema checks

"""Video-level to frame-level conversion (REFERENCE step 1) on hand-made JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from overlearning.core.errors import WorkflowInputError
from overlearning.data.vis_frames import (
    convert_video_annotations,
    read_object_count,
    videos_to_frames,
)
from tests.test_prepare_fixtures import VIS_CATEGORIES, box_mask, uncompressed_rle


def _video_json() -> dict:
    """Two videos; object 2 is absent in frame 0; object 3 is never visible."""
    seg = uncompressed_rle(box_mask(4, 5, 1, 1, 2, 2))
    return {
        "videos": [
            {"id": 7, "width": 5, "height": 4, "length": 2, "file_names": ["a/0.jpg", "a/1.jpg"]},
            {"id": 3, "width": 5, "height": 4, "length": 3,
             "file_names": ["b/0.jpg", "b/1.jpg", "b/2.jpg"]},
        ],
        "annotations": [
            {"id": 11, "video_id": 7, "category_id": 1, "iscrowd": 0,
             "segmentations": [seg, seg], "bboxes": [[1, 1, 2, 2], [1, 1, 2, 2]],
             "areas": [4, 4]},
            {"id": 12, "video_id": 3, "category_id": 26, "iscrowd": 1,
             "segmentations": [None, seg, seg], "bboxes": [None, [1, 1, 2, 2], [1, 1, 2, 2]],
             "areas": [None, 4, 4]},
            {"id": 13, "video_id": 3, "category_id": 1, "iscrowd": 0,
             "segmentations": [None, None, None], "bboxes": [None] * 3, "areas": [None] * 3},
        ],
        "categories": VIS_CATEGORIES,
    }


def test_images_numbered_in_video_then_frame_order() -> None:
    frames = videos_to_frames(_video_json())
    assert frames["images"] == [
        {"id": 1, "video_id": 7, "frame_id": 0, "width": 5, "height": 4, "file_name": "a/0.jpg"},
        {"id": 2, "video_id": 7, "frame_id": 1, "width": 5, "height": 4, "file_name": "a/1.jpg"},
        {"id": 3, "video_id": 3, "frame_id": 0, "width": 5, "height": 4, "file_name": "b/0.jpg"},
        {"id": 4, "video_id": 3, "frame_id": 1, "width": 5, "height": 4, "file_name": "b/1.jpg"},
        {"id": 5, "video_id": 3, "frame_id": 2, "width": 5, "height": 4, "file_name": "b/2.jpg"},
    ]
    assert frames["categories"] == VIS_CATEGORIES
    assert [v["id"] for v in frames["videos"]] == [7, 3]


def test_annotations_skip_null_frames_and_keep_object_positions() -> None:
    frames = videos_to_frames(_video_json())
    got = [(a["id"], a["object_id"], a["video_id"], a["image_id"], a["category_id"],
            a["iscrowd"], a["area"], a["bbox"]) for a in frames["annotations"]]
    assert got == [
        (1, 1, 7, 1, 1, 0, 4, [1, 1, 2, 2]),
        (2, 1, 7, 2, 1, 0, 4, [1, 1, 2, 2]),
        (3, 2, 3, 4, 26, 1, 4, [1, 1, 2, 2]),
        (4, 2, 3, 5, 26, 1, 4, [1, 1, 2, 2]),
    ]
    # The segmentation is carried over untouched (still uncompressed RLE).
    assert frames["annotations"][0]["segmentation"] == _video_json()["annotations"][0]["segmentations"][0]
    decoded = coco_mask.decode(coco_mask.frPyObjects(frames["annotations"][2]["segmentation"], 4, 5))
    assert np.array_equal(decoded, box_mask(4, 5, 1, 1, 2, 2))


def test_convert_file_writes_frames_and_object_count(tmp_path: Path) -> None:
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(_video_json()))
    stats = convert_video_annotations(source, tmp_path / "out/frames.json", tmp_path / "out/objects.json")
    # Object 3 has no visible frame but still counts: OVIS labels start after it.
    assert stats == {"videos": 2, "images": 5, "annotations": 4, "objects": 3}
    assert read_object_count(tmp_path / "out/objects.json") == 3
    written = json.loads((tmp_path / "out/frames.json").read_text())
    assert set(written) == {"videos", "images", "annotations", "categories"}
    assert written == json.loads(json.dumps(videos_to_frames(_video_json())))


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d["annotations"][0].update(category_id=99), r"annotations\[0\].category_id: expected one of the categories' ids, found 99"),
    (lambda d: d["annotations"][0]["bboxes"].pop(), "expected lists as long as its video"),
    (lambda d: d["annotations"][1].update(areas=[None, 4]), "expected lists as long as its video"),
    (lambda d: d["annotations"][0].update(video_id=42), r"annotations\[0\].video_id: expected one of the videos' ids, found 42"),
    (lambda d: d["annotations"][0]["bboxes"].__setitem__(1, None), "frame 1, found no bbox"),
    (lambda d: d["videos"][1].update(id=7), r"\$.videos\[1\].id: expected a unique id, found 7"),
    (lambda d: d["videos"][0].update(length=5), r"videos\[0\].length: expected 2 .*found 5"),
    (lambda d: d["annotations"][0].pop("segmentations"), r"\$.annotations\[0\]: expected keys .*found no segmentations"),
    (lambda d: d.pop("categories"), "expected keys videos, annotations, categories, found no categories"),
])
def test_bad_input_names_file_and_reason(tmp_path: Path, breakage, message: str) -> None:
    data = copy.deepcopy(_video_json())
    breakage(data)
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(data))
    with pytest.raises(WorkflowInputError, match=message) as info:
        convert_video_annotations(source, tmp_path / "frames.json")
    assert info.value.where == str(source)
    assert not (tmp_path / "frames.json").exists()


def test_malformed_and_missing_json(tmp_path: Path) -> None:
    bad = tmp_path / "instances.json"
    bad.write_text('{"videos": [')
    with pytest.raises(WorkflowInputError, match="not readable as JSON"):
        convert_video_annotations(bad, tmp_path / "frames.json")
    with pytest.raises(WorkflowInputError, match="file not found"):
        convert_video_annotations(tmp_path / "nope.json", tmp_path / "frames.json")

"""The seeded video split (REFERENCE step 2) against hand-computed shuffles."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from overlearning.data.vis_split import (
    cut_points,
    shuffled_video_order,
    split_frames,
    split_frames_file,
)


def _frames(n_videos: int, empty: tuple[int, ...] = (), interleave: bool = False) -> dict:
    """Frame-level JSON: video v has 2 frames and (unless empty) one annotation per frame."""
    videos, images, annotations = [], [], []
    for v in range(1, n_videos + 1):
        videos.append({"id": v, "file_names": [f"{v}/0.jpg", f"{v}/1.jpg"]})
        for f in range(2):
            images.append({"id": len(images) + 1, "video_id": v, "frame_id": f})
            if v not in empty:
                annotations.append({"id": len(annotations) + 1, "video_id": v,
                                    "image_id": len(images)})
    if interleave:  # annotations of one video need not be contiguous
        annotations = annotations[::2] + annotations[1::2]
    return {"videos": videos, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "x"}]}


def test_shuffle_is_the_studys_global_seeded_shuffle() -> None:
    ids = list(range(1, 11))
    reference = list(ids)
    random.seed(123)
    random.shuffle(reference)
    assert shuffled_video_order(ids, 123) == reference
    # Recorded once from CPython's seeded shuffle, so a change on both sides together
    # (another shuffle, another seed) still fails.
    assert reference == [9, 8, 6, 10, 3, 4, 7, 2, 5, 1]


def test_shuffle_leaves_global_random_state_alone() -> None:
    random.seed(5)
    expected = random.random()
    random.seed(5)
    shuffled_video_order(list(range(20)), 123)
    assert random.random() == expected


@pytest.mark.parametrize("n, cuts", [(10, (8, 9)), (7, (5, 6)), (3, (2, 2)), (1, (0, 0)), (25, (20, 22))])
def test_cut_points(n: int, cuts: tuple[int, int]) -> None:
    assert cut_points(n, (0.8, 0.9)) == cuts


def test_split_assigns_whole_videos_in_shuffled_order() -> None:
    frames = _frames(10)
    parts = split_frames(frames, (0.8, 0.9), 123)
    assert [v["id"] for v in parts["train"]["videos"]] == [9, 8, 6, 10, 3, 4, 7, 2]
    assert [v["id"] for v in parts["valid"]["videos"]] == [5]
    assert [v["id"] for v in parts["test"]["videos"]] == [1]
    for name, part in parts.items():
        ids = [v["id"] for v in part["videos"]]
        assert [i["video_id"] for i in part["images"]] == [v for v in ids for _ in range(2)], name
        assert [a["video_id"] for a in part["annotations"]] == [v for v in ids for _ in range(2)]
        assert part["categories"] == frames["categories"]


def test_video_without_annotations_does_not_shift_the_others() -> None:
    frames = _frames(10, empty=(2,), interleave=True)
    parts = split_frames(frames, (0.8, 0.9), 123)
    for part in parts.values():
        image_video = {i["id"]: i["video_id"] for i in part["images"]}
        # Every annotation stays with its own video's frames.
        assert all(image_video[a["image_id"]] == a["video_id"] for a in part["annotations"])
    assert [v["id"] for v in parts["test"]["videos"]] == [1]
    assert [a["video_id"] for a in parts["test"]["annotations"]] == [1, 1]
    assert [v["id"] for v in parts["train"]["videos"]][-1] == 2
    assert parts["train"]["annotations"][-1]["video_id"] != 2
    assert sum(len(p["annotations"]) for p in parts.values()) == 18


def test_split_file_writes_three_instances(tmp_path: Path) -> None:
    frames_path = tmp_path / "frames.json"
    frames_path.write_text(json.dumps(_frames(10)))
    outs = {s: tmp_path / s / "instances.json" for s in ("train", "valid", "test")}
    assert split_frames_file(frames_path, outs, (0.8, 0.9), 123) == {"train": 8, "valid": 1, "test": 1}
    first = {s: p.read_bytes() for s, p in outs.items()}
    split_frames_file(frames_path, outs, (0.8, 0.9), 123)
    assert {s: p.read_bytes() for s, p in outs.items()} == first
    test = json.loads(outs["test"].read_text())
    assert set(test) == {"videos", "images", "annotations", "categories"}

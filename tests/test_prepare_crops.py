"""Foreground crops and their indexes (REFERENCE step 3), YouTube-VIS and OVIS."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import open_pack
from overlearning.data.crop_sets import load_crop_set
from overlearning.data.crops import crop_file_name, crop_window, make_crops
from overlearning.data.vis_frames import convert_video_annotations, read_object_count
from tests.test_prepare_fixtures import (
    VIS_CATEGORIES,
    box_mask,
    build_ovis,
    build_vis,
    frame_pixels,
    uncompressed_rle,
    write_png,
)


def _instances(tmp_path: Path, annotations: list[dict], height: int = 6, width: int = 8,
               pixels: np.ndarray | None = None) -> Path:
    """One frame ``v/img_00001.png`` and a frame-level instances.json around it."""
    write_png(tmp_path / "frames/v/img_00001.png",
              frame_pixels(height, width, 1) if pixels is None else pixels)
    data = {"videos": [{"id": 1}],
            "images": [{"id": 1, "video_id": 1, "frame_id": 0, "width": width,
                        "height": height, "file_name": "v/img_00001.png"}],
            "annotations": annotations, "categories": VIS_CATEGORIES}
    path = tmp_path / "split/instances.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _annotation(ann_id: int, object_id: int, mask: np.ndarray, bbox: list[float],
                category: int = 1) -> dict:
    return {"id": ann_id, "object_id": object_id, "video_id": 1, "image_id": 1,
            "category_id": category, "segmentation": uncompressed_rle(mask),
            "area": int(mask.sum()), "bbox": bbox, "iscrowd": 0}


def test_crop_name_drops_img_prefix_and_appends_object_id() -> None:
    assert crop_file_name("abc/img_0000007.jpg", 8437, "jpg") == "abc/0000007_8437.jpg"
    assert crop_file_name("0a1b/00015.jpg", 3, "png") == "0a1b/00015_3.png"


@pytest.mark.parametrize("frame", [
    "v/img_00001.jpg", "img_7.png", "a/b/c/img_1.jpeg", "v/x.y.jpg", "v/.hidden", "v/a.",
    "v//img_1.jpg", "./v/img_1.jpg", "v/./img_1.jpg", "v/../img_1.jpg", "/abs/img_1.jpg",
    "v\\img_1.jpg", "v/img_", "v/noext", "v/img_img_3.jpg"])
def test_crop_name_is_the_pathlib_name_for_every_shape_of_frame_name(frame: str) -> None:
    # The study's naming, spelled with pathlib: the fast path must give the same names.
    path = PurePosixPath(frame)
    expected = str(path.with_name(f"{path.stem.removeprefix('img_')}_9.jpg"))
    assert crop_file_name(frame, 9, "jpg") == expected


def test_crop_window_pads_with_zeros_like_torchvision() -> None:
    pixels = np.arange(1, 13, dtype=np.uint8).reshape(3, 4)
    # Window from (x=2, y=1), 4 wide and 3 high: only a 2 x 2 corner lies inside.
    assert crop_window(pixels, 2, 1, 4, 3).tolist() == [
        [7, 8, 0, 0],
        [11, 12, 0, 0],
        [0, 0, 0, 0],
    ]
    assert crop_window(pixels, -1, -1, 2, 2).tolist() == [[0, 0], [0, 1]]


def test_crop_pixels_follow_a_hand_made_mask(tmp_path: Path) -> None:
    pixels = frame_pixels(6, 8, seed=3)
    mask = np.zeros((6, 8), np.uint8)
    mask[2, 5] = mask[3, 5] = mask[3, 6] = mask[4, 7] = 1  # an L-shape plus a corner pixel
    # bbox 4 wide, 4 high at (5.7, 2.2): int() gives x=5, y=2; columns 8 and 9 lie outside.
    path = _instances(tmp_path, [_annotation(1, 4, mask, [5.7, 2.2, 4.9, 4.0])], pixels=pixels)
    stats = make_crops(path, tmp_path / "frames", tmp_path / "split", ext="png")
    assert stats == {"crops": 1, "skipped_zero_size": 0, "frames": 1, "empty_mask": 0}
    crop = np.asarray(_crop(tmp_path / "split", "v/00001_4.png"))
    expected = np.zeros((4, 4, 3), np.uint8)
    expected[0, 0] = pixels[2, 5]
    expected[1, 0] = pixels[3, 5]
    expected[1, 1] = pixels[3, 6]
    expected[2, 2] = pixels[4, 7]
    assert np.array_equal(crop, expected)


def test_indexes_fields_and_crop_mask(tmp_path: Path) -> None:
    mask = box_mask(6, 8, 1, 1, 3, 2)
    person = box_mask(6, 8, 4, 0, 3, 5)
    path = _instances(tmp_path, [_annotation(10, 1, mask, [1.0, 1.0, 3.0, 2.0]),
                                 _annotation(11, 2, person, [4.0, 0.0, 3.0, 5.0], category=26)])
    make_crops(path, tmp_path / "frames", tmp_path / "split", ext="jpg")
    cropped = json.loads((tmp_path / "split/fg_instances_cropped.json").read_text())
    framed = json.loads((tmp_path / "split/fg_instances.json").read_text())
    assert set(cropped) == set(framed) == {"videos", "images", "annotations", "categories"}
    assert cropped["categories"] == VIS_CATEGORIES
    assert cropped["images"] == [
        {"id": 1, "video_id": 1, "frame_id": 0, "width": 3, "height": 2, "file_name": "v/00001_1.jpg"},
        {"id": 2, "video_id": 1, "frame_id": 0, "width": 3, "height": 5, "file_name": "v/00001_2.jpg"},
    ]
    assert [i["width"] for i in framed["images"]] == [8, 8]
    assert [i["file_name"] for i in framed["images"]] == ["v/00001_1.jpg", "v/00001_2.jpg"]
    first = cropped["annotations"][0]
    assert {k: first[k] for k in ("id", "object_id", "image_id", "category_id", "area", "bbox",
                                  "bbox_prev", "iscrowd", "video_id")} == {
        "id": 10, "object_id": 1, "image_id": 1, "category_id": 1, "area": 6,
        "bbox": [0.0, 0.0, 3.0, 2.0], "bbox_prev": [1.0, 1.0, 3.0, 2.0], "iscrowd": 0, "video_id": 1}
    assert isinstance(first["segmentation"]["counts"], str)
    assert coco_mask.decode(first["segmentation"]).tolist() == [[1, 1, 1], [1, 1, 1]]
    frame_ann = framed["annotations"][1]
    assert frame_ann["bbox"] == [4.0, 0.0, 3.0, 5.0] and "bbox_prev" not in frame_ann
    assert frame_ann["segmentation"] == uncompressed_rle(person)
    # The training / evaluation reader sees labels from the names and the person flag.
    items = load_crop_set(tmp_path / "split", person_category=26)
    assert [(i.name, i.label, i.is_person) for i in items] == [
        ("v/00001_1.jpg", 1, False), ("v/00001_2.jpg", 2, True)]
    assert [i.name for i in load_crop_set(tmp_path / "split", 26, "exclude")] == ["v/00001_1.jpg"]


def test_zero_size_crop_is_skipped_counted_and_logged(tmp_path: Path, caplog) -> None:
    mask = box_mask(6, 8, 1, 1, 3, 2)
    path = _instances(tmp_path, [_annotation(10, 1, mask, [1.0, 1.0, 0.6, 2.0]),
                                 _annotation(11, 2, mask, [1.0, 1.0, 3.0, 2.0])])
    with caplog.at_level("INFO"):
        stats = make_crops(path, tmp_path / "frames", tmp_path / "split")
    assert stats["skipped_zero_size"] == 1 and stats["crops"] == 1
    assert "skipped 1 zero-size crop(s), annotation ids: 10" in caplog.text
    cropped = json.loads((tmp_path / "split/fg_instances_cropped.json").read_text())
    # Image ids are annotation positions, as in the study: the skipped one leaves a gap.
    assert [(i["id"], i["file_name"]) for i in cropped["images"]] == [(2, "v/00001_2.jpg")]
    assert "v/00001_1.jpg" not in open_pack(tmp_path / "split/foregroundImages_cropped.zip")


@pytest.mark.parametrize("case, message", [
    ("missing_frame", "image file not found"),
    ("corrupt_frame", "corrupt or unreadable image"),
    ("mask_size", "mask size 5x8 differs from the frame 6x8"),
    ("unknown_category", "unknown category id 77"),
    ("frame_size", "frame is 6x8 but instances.json says 6x9"),
])
def test_bad_input_stops_and_leaves_nothing(tmp_path: Path, case: str, message: str) -> None:
    mask = box_mask(6, 8, 1, 1, 3, 2)
    annotation = _annotation(10, 1, mask, [1.0, 1.0, 3.0, 2.0])
    if case == "mask_size":
        annotation["segmentation"] = uncompressed_rle(box_mask(5, 8, 1, 1, 3, 2))
    if case == "unknown_category":
        annotation["category_id"] = 77
    path = _instances(tmp_path, [annotation])
    frame = tmp_path / "frames/v/img_00001.png"
    if case == "missing_frame":
        frame.unlink()
    if case == "corrupt_frame":
        frame.write_bytes(frame.read_bytes()[:40])
    if case == "frame_size":
        data = json.loads(path.read_text())
        data["images"][0]["width"] = 9
        path.write_text(json.dumps(data))
    with pytest.raises(WorkflowInputError, match=message):
        make_crops(path, tmp_path / "frames", tmp_path / "split")
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["instances.json"]


def _crop(split: Path, name: str) -> Image.Image:
    """One crop, read from the split's pack."""
    return open_pack(split / "foregroundImages_cropped.zip").open_image(name)


def _digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_vis_crops_deterministic_across_runs_and_threads(tmp_path: Path) -> None:
    build_vis(tmp_path / "raw", n_videos=4)
    convert_video_annotations(tmp_path / "raw/instances.json", tmp_path / "a/instances.json")
    runs = []
    for threads, out in ((1, "a"), (2, "b")):
        (tmp_path / out).mkdir(exist_ok=True)
        if out != "a":
            (tmp_path / out / "instances.json").write_bytes((tmp_path / "a/instances.json").read_bytes())
        make_crops(tmp_path / out / "instances.json", tmp_path / "raw/JPEGImages", tmp_path / out,
                   threads=threads)
        runs.append(_digest_tree(tmp_path / out))
    assert runs[0] == runs[1]
    make_crops(tmp_path / "a/instances.json", tmp_path / "raw/JPEGImages", tmp_path / "a", threads=2)
    assert _digest_tree(tmp_path / "a") == runs[0]
    # 4 videos: cats in every frame (3 x 4) + persons in videos 2 and 4 (2 frames each).
    assert sorted(runs[0]) == ["fg_instances.json", "fg_instances_cropped.json",
                               "foregroundImages_cropped.zip", "instances.json"]
    assert len(open_pack(tmp_path / "a/foregroundImages_cropped.zip").names()) == 16
    with _crop(tmp_path / "a", "vid002/00000_2.jpg") as image:
        assert image.format == "JPEG" and image.size == (5, 4)
        assert "exif" not in image.info


def test_ovis_crops_offset_compressed_rle_and_polygons(tmp_path: Path) -> None:
    data = build_ovis(tmp_path / "raw")
    vis = build_vis(tmp_path / "vis", n_videos=3)
    convert_video_annotations(tmp_path / "vis/instances.json", tmp_path / "vis_frames.json",
                              tmp_path / "objects.json")
    offset = read_object_count(tmp_path / "objects.json")
    assert offset == len(vis["annotations"]) == 4
    convert_video_annotations(tmp_path / "raw/annotations_train.json", tmp_path / "test/instances.json")
    stats = make_crops(tmp_path / "test/instances.json", tmp_path / "raw/train", tmp_path / "test",
                       ext="png", object_offset=offset)
    assert stats["crops"] == 3
    names = open_pack(tmp_path / "test/foregroundImages_cropped.zip").names()
    assert names == ["ovid1/0000001_5.png", "ovid1/0000001_6.png", "ovid1/0000002_5.png"]
    cropped = json.loads((tmp_path / "test/fg_instances_cropped.json").read_text())
    assert sorted({a["object_id"] for a in cropped["annotations"]}) == [5, 6]
    assert cropped["categories"] == data["categories"]
    # The polygon bird: box (6, 2, 4, 5); pycocotools rasterises the polygon the same way
    # for the reference mask.
    frame = np.asarray(Image.open(tmp_path / "raw/train/ovid1/img_0000001.png"))
    polygon = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(
        data["annotations"][1]["segmentations"][0], 10, 12)))
    expected = (frame * polygon[..., None])[2:7, 6:10]
    bird = np.asarray(_crop(tmp_path / "test", "ovid1/0000001_6.png"))
    assert np.array_equal(bird, expected)
    # The compressed-RLE person: its mask is the box itself, so the crop is the frame's box.
    person = np.asarray(_crop(tmp_path / "test", "ovid1/0000001_5.png"))
    assert np.array_equal(person, frame[1:7, 2:5])
    persons = load_crop_set(tmp_path / "test", person_category=1, persons="only")
    assert [(i.name, i.label) for i in persons] == [("ovid1/0000001_5.png", 5),
                                                   ("ovid1/0000002_5.png", 5)]


def test_box_outside_the_frame_gives_a_black_crop_counted_as_empty(tmp_path: Path, caplog) -> None:
    mask = box_mask(6, 8, 1, 1, 3, 2)
    path = _instances(tmp_path, [_annotation(10, 1, mask, [20.0, 20.0, 3.0, 2.0])])
    with caplog.at_level("INFO"):
        stats = make_crops(path, tmp_path / "frames", tmp_path / "split", ext="png")
    assert stats["crops"] == 1 and stats["empty_mask"] == 1
    assert "1 crop(s) with an empty mask" in caplog.text
    crop = np.asarray(_crop(tmp_path / "split", "v/00001_1.png"))
    assert crop.shape == (2, 3, 3) and not crop.any()

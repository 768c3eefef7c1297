"""Person re-ID sets masked with MGCAM masks (REFERENCE step 5)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import open_pack
from overlearning.data.crop_sets import load_person_set
from overlearning.data.person_sets import label_group, mask_person, prepare_person_set
from tests.test_prepare_fixtures import build_cuhk03, build_market, write_png


def test_masking_keeps_person_pixels_and_blacks_out_the_rest(tmp_path: Path) -> None:
    pixels = np.arange(1, 1 + 4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    mask = np.array([[0, 255, 0], [255, 255, 255], [0, 255, 0], [0, 0, 0]], np.uint8)
    root = tmp_path / "raw"
    for folder in ("query", "bounding_box_test"):
        write_png(root / folder / "0007_c2_1.png", pixels)
        write_png(root / f"{folder}_seg" / "0007_c2_1.png", mask)
    prepare_person_set(root, root, tmp_path / "out", ext="png")
    out = open_pack(tmp_path / "out/foreground_query.zip").read_rgb("0007_c2_1.png")
    expected = np.zeros_like(pixels)
    for y, x in [(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)]:
        expected[y, x] = pixels[y, x]
    assert np.array_equal(out, expected)
    assert np.array_equal(mask_person(pixels, (mask > 0).astype(np.uint8)), expected)
    gallery = open_pack(tmp_path / "out/foregroundImages_cropped.zip").read_rgb("0007_c2_1.png")
    assert np.array_equal(gallery, expected)


def test_cuhk03_subset_layout_and_labels(tmp_path: Path) -> None:
    build_cuhk03(tmp_path / "raw")
    stats = prepare_person_set(tmp_path / "raw/labeled", tmp_path / "raw/labeled",
                               tmp_path / "data/cuhk03/labeled")
    assert stats["foreground_query"]["written"] == 2
    query = load_person_set(tmp_path / "data/cuhk03/labeled/foreground_query.zip")
    gallery = load_person_set(tmp_path / "data/cuhk03/labeled/foregroundImages_cropped.zip")
    assert [(i.name, i.label, i.camera) for i in query] == [
        ("0001_c1_1.jpg", 1, 1), ("0002_c1_1.jpg", 2, 1)]
    assert [i.name for i in gallery] == ["0001_c2_1.jpg", "0001_c2_2.jpg", "0002_c2_1.jpg"]
    # Only query and bounding_box_test are used; training identities are not.
    assert sorted(p.name for p in (tmp_path / "data/cuhk03/labeled").iterdir()) == [
        "foregroundImages_cropped.zip", "foreground_query.zip"]


def test_label_groups() -> None:
    assert label_group("-1_c1s1_000401_03.jpg") == "junk"
    assert label_group("0000_c3s1_000551_01.jpg") == "distractor"
    assert label_group("0001_c1s1_000151_00.jpg") == "person"


@pytest.mark.parametrize("junk, distractors, expected", [
    ("drop", "keep", ["0000_c3s1_000551_01.jpg", "0001_c2s1_000176_01.jpg", "0002_c1s1_000326_02.jpg"]),
    ("drop", "drop", ["0001_c2s1_000176_01.jpg", "0002_c1s1_000326_02.jpg"]),
    ("keep", "keep", ["-1_c1s1_000401_03.jpg", "0000_c3s1_000551_01.jpg",
                      "0001_c2s1_000176_01.jpg", "0002_c1s1_000326_02.jpg"]),
])
def test_market_junk_and_distractor_policy(tmp_path: Path, junk: str, distractors: str,
                                           expected: list[str]) -> None:
    build_market(tmp_path / "raw")
    stats = prepare_person_set(tmp_path / "raw", tmp_path / "raw", tmp_path / "out",
                               junk=junk, distractors=distractors, threads=2)
    gallery = load_person_set(tmp_path / "out/foregroundImages_cropped.zip")
    assert [i.name for i in gallery] == expected
    g = stats["foregroundImages_cropped"]
    # Thumbs.db is not an image and is not counted.
    assert (g["images"], g["junk"], g["distractor"], g["person"]) == (4, 1, 1, 2)
    assert g["dropped"] == 4 - len(expected)
    assert {i.label for i in gallery} <= {-1, 0, 1, 2}


def test_person_set_is_deterministic(tmp_path: Path) -> None:
    build_market(tmp_path / "raw")
    digests = []
    for out, threads in (("a", 1), ("b", 2)):
        prepare_person_set(tmp_path / "raw", tmp_path / "raw", tmp_path / out, threads=threads)
        digests.append({p.relative_to(tmp_path / out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / out).rglob("*")) if p.is_file()})
    assert digests[0] == digests[1] and len(digests[0]) == 2
    assert len(open_pack(tmp_path / "a/foregroundImages_cropped.zip").names()) == 3


@pytest.mark.parametrize("case, message", [
    ("missing_mask", "no MGCAM mask"),
    ("mask_size", "mask is 8x8 but the image"),
    ("corrupt_image", "corrupt or unreadable image"),
    ("missing_folder", "image folder not found"),
])
def test_bad_person_input(tmp_path: Path, case: str, message: str) -> None:
    root = tmp_path / "raw"
    build_market(root)
    name = "0001_c2s1_000176_01"
    if case == "missing_mask":
        (root / "bounding_box_test_seg" / f"{name}.png").unlink()
    if case == "mask_size":
        write_png(root / "bounding_box_test_seg" / f"{name}.png", np.full((8, 8), 255, np.uint8))
    if case == "corrupt_image":
        (root / "bounding_box_test" / f"{name}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    if case == "missing_folder":
        (root / "query").rename(root / "queries")
    with pytest.raises(WorkflowInputError, match=message):
        prepare_person_set(root, root, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

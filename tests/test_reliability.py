"""Hostile and broken data: refused with one line naming file, entry and problem.

Every class of bad input in docs/reliability.md has a case here: paths that leave their
folder (absolute, '..', links), malformed values (non-finite numbers, wrong types, null
lists), silently wrong data (no usable annotation, duplicate ids, NaN areas, unofficial
person names, boxes far outside the image, another edition's category ids), images whose
header declares a huge size, and temporaries left by killed jobs. Property-based tests
feed random corruptions of a valid YouTube-VIS JSON and of a valid detections JSON to the
readers: each ends in a valid result or the project's own error naming the file.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overlearning.core import image_io
from overlearning.core.atomic import atomic_directory, read_json, remove_stale_temporaries
from overlearning.core.errors import WorkflowInputError
from overlearning.core.paths import contained
from overlearning.core.validate import BOX_TOLERANCE
from overlearning.data.archives import ArchiveSource, extract_archives
from overlearning.data.crop_sets import person_camera
from overlearning.data.crops import make_crops
from overlearning.data.person_sets import prepare_person_set
from overlearning.data.vis_frames import convert_video_annotations, videos_to_frames
from overlearning.data.vis_split import split_frames_file
from overlearning.detect.detection_files import check_boxes_inside, load_detections
from overlearning.evaluate.embeddings import load_embedding_set
from tests.test_prepare_fixtures import (
    box_mask,
    build_market,
    build_vis,
    frame_pixels,
    uncompressed_rle,
    write_png,
)

REPO = Path(__file__).resolve().parent.parent


# --- helpers ------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, int]:
    """Every file below ``root`` with its size (what was written where)."""
    return {p.relative_to(root).as_posix(): p.stat().st_size
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def _frames_file(tmp_path: Path, file_name: str) -> tuple[Path, Path]:
    """A one-frame frame-level instances file naming ``file_name``; (file, images root)."""
    images = tmp_path / "dataset/JPEGImages"
    write_png(images / "v/00000.png", frame_pixels(6, 8, seed=1))
    mask = box_mask(6, 8, 1, 1, 3, 2)
    data = {"videos": [{"id": 1}],
            "images": [{"id": 1, "video_id": 1, "frame_id": 0, "width": 8, "height": 6,
                        "file_name": file_name}],
            "annotations": [{"id": 1, "object_id": 1, "video_id": 1, "image_id": 1,
                             "category_id": 26, "segmentation": uncompressed_rle(mask),
                             "bbox": [1.0, 1.0, 3.0, 2.0], "area": 6, "iscrowd": 0}],
            "categories": [{"id": 26, "name": "person"}]}
    path = tmp_path / "out/vis/test/instances.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path, images


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every image path the readers open (to prove nothing outside a root is read)."""
    seen: list[Path] = []
    real_open = image_io.Image.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(Path(os.path.realpath(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(image_io.Image, "open", spy)
    return seen


# --- containment ----------------------------------------------------------------------------


@pytest.mark.parametrize("name, problem", [
    ("/etc/passwd", "absolute path"),
    ("../outside.png", "'..' in path"),
    ("v/../../outside.png", "'..' in path"),
    ("C:\\frames\\x.png", "absolute path"),
    ("..\\outside.png", "'..' in path"),
    ("", "non-empty relative path"),
    (7, "non-empty relative path"),
])
def test_contained_refuses_escapes_naming_file_entry_and_path(tmp_path: Path, name: Any,
                                                              problem: str) -> None:
    with pytest.raises(WorkflowInputError, match=problem) as info:
        contained(tmp_path, name, "data.json", "$.images[3].file_name")
    assert info.value.where == "data.json"
    assert "$.images[3].file_name" in str(info.value) and repr(name) in str(info.value)


def test_contained_follows_links_and_refuses_one_leaving_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "alias").symlink_to(root / "inner")
    assert contained(root, "alias/x.png", "f", "e") == root / "alias/x.png"
    assert contained(root, "./inner//x.png", "f", "e") == root / "inner/x.png"
    with pytest.raises(WorkflowInputError, match="outside"):
        contained(root, "escape/x.png", "f", "e")


@pytest.mark.parametrize("name", ["/ABS", "../outside/00000.png"])
def test_dataset_directory_with_escaping_frame_names_reads_and_writes_nothing_outside(
        tmp_path: Path, name: str, opened: list[Path]) -> None:
    """A dataset given as a directory whose video JSON names frames outside it."""
    dataset = tmp_path / "dataset"
    build_vis(dataset, n_videos=3, frames=2)
    outside = tmp_path / "outside"
    write_png(outside / "00000.png", frame_pixels(12, 16, seed=9))
    if name == "/ABS":
        name = str(outside / "00000.png")
    data = json.loads((dataset / "instances.json").read_text())
    data["videos"][1]["file_names"][0] = name
    (dataset / "instances.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    out.mkdir()
    before = _tree(tmp_path)

    with pytest.raises(WorkflowInputError) as info:
        convert_video_annotations(dataset / "instances.json", out / "frames.json")
    message = str(info.value)
    assert info.value.where == str(dataset / "instances.json")
    assert "$.videos[1].file_names[0]" in message and repr(name) in message
    assert _tree(tmp_path) == before

    # The same names in a frame-level file handed to the crop writer directly.
    instances, images = _frames_file(tmp_path / "direct", name)
    before = _tree(tmp_path)
    with pytest.raises(WorkflowInputError, match=r"\$\.images\[0\]\.file_name") as info:
        make_crops(instances, images, instances.parent)
    assert info.value.where == str(instances)
    assert _tree(tmp_path) == before
    assert opened == []  # not a single image was opened, inside or outside


def test_frame_reached_through_a_link_leaving_the_dataset_is_not_read(
        tmp_path: Path, opened: list[Path]) -> None:
    instances, images = _frames_file(tmp_path, "v/link/00000.png")
    write_png(tmp_path / "secret/00000.png", frame_pixels(6, 8, seed=2))
    (images / "v/link").symlink_to(tmp_path / "secret")
    with pytest.raises(WorkflowInputError, match="outside"):
        make_crops(instances, images, instances.parent)
    assert opened == []
    assert sorted(p.name for p in instances.parent.iterdir()) == ["instances.json"]


def test_person_image_linked_from_outside_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "raw"
    build_market(root)
    target = root / "query" / "0001_c1s1_000151_00.jpg"
    (tmp_path / "elsewhere.jpg").write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(tmp_path / "elsewhere.jpg")
    with pytest.raises(WorkflowInputError, match="outside"):
        prepare_person_set(root, root, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_detection_file_naming_an_image_outside_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "detections.json"
    path.write_text(json.dumps({"../../etc/x.jpg": []}))
    with pytest.raises(WorkflowInputError, match=r"'\.\.' in path") as info:
        load_detections(path)
    assert info.value.where == str(path)


# --- malformed values -------------------------------------------------------------------------


def _vis_json() -> dict[str, Any]:
    seg = uncompressed_rle(box_mask(4, 5, 1, 1, 2, 2))
    data = {
        "videos": [{"id": 1, "width": 5, "height": 4, "length": 2,
                    "file_names": ["a/0.png", "a/1.png"]},
                   {"id": 2, "width": 5, "height": 4, "length": 2,
                    "file_names": ["b/0.png", "b/1.png"]}],
        "annotations": [
            {"id": 1, "video_id": 1, "category_id": 26, "iscrowd": 0,
             "segmentations": [seg, None], "bboxes": [[1, 1, 2, 2], None], "areas": [4, None]},
            {"id": 2, "video_id": 2, "category_id": 1, "iscrowd": 0,
             "segmentations": [seg, seg], "bboxes": [[1, 1, 2, 2], [1.5, 1, 2, 2]],
             "areas": [4, 4.0]}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 26, "name": "person"}],
    }
    return json.loads(json.dumps(data))  # no shared sub-objects: edits stay where made


def _convert_text(tmp_path: Path, text: str, **kwargs: Any) -> WorkflowInputError:
    source = tmp_path / "instances.json"
    source.write_text(text)
    with pytest.raises(WorkflowInputError) as info:
        convert_video_annotations(source, tmp_path / "frames.json", **kwargs)
    assert info.value.where == str(source)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "frames.json").exists()
    return info.value


@pytest.mark.parametrize("breakage, message", [
    # non-finite numbers: NaN and Infinity are not JSON, 1e999 overflows
    (lambda t: t.replace("[1, 1, 2, 2]", "[NaN, 1, 2, 2]", 1), "non-standard constant NaN"),
    (lambda t: t.replace("[1, 1, 2, 2]", "[1, 1, Infinity, 2]", 1), "Infinity"),
    (lambda t: t.replace("[1, 1, 2, 2]", "[1, 1, 1e999, 2]", 1), "overflows"),
    (lambda t: t.replace('"areas": [4, null]', '"areas": [NaN, null]'), "NaN"),
])
def test_non_finite_numbers_name_the_file(tmp_path: Path, breakage: Any, message: str) -> None:
    error = _convert_text(tmp_path, breakage(json.dumps(_vis_json())))
    assert message in str(error)


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d["annotations"][0].update(video_id=[1]),
     r"\$\.annotations\[0\]\.video_id: expected an integer, found \[1\]"),
    (lambda d: d["videos"][0].update(id=[1, 2]),
     r"\$\.videos\[0\]\.id: expected an integer, found \[1, 2\]"),
    (lambda d: d["annotations"][1].update(segmentations=None),
     r"\$\.annotations\[1\]\.segmentations: expected a list, found None"),
    (lambda d: d["videos"][1].update(file_names=None),
     r"\$\.videos\[1\]\.file_names: expected a list, found None"),
    (lambda d: d.update(annotations=None), r"\$\.annotations: expected a list, found None"),
    (lambda d: d["annotations"][1]["bboxes"].__setitem__(1, [1, 1, "2", 2]),
     r"bboxes\[1\]: expected \[x, y, w, h\] of 4 finite numbers"),
    (lambda d: d["annotations"][1]["bboxes"].__setitem__(1, [1, 1, -2, 2]),
     r"bboxes\[1\]: expected a box of non-negative width and height"),
    (lambda d: d["annotations"][1].update(iscrowd=True), r"iscrowd: expected an integer"),
    (lambda d: d["annotations"][1]["segmentations"][1].update(size=[5, 4]),
     r"segmentations\[1\]: expected mask size \[4, 5\]"),
    (lambda d: d["annotations"][1]["segmentations"][1].update(counts=[3, 2]),
     r"segmentations\[1\]: expected RLE counts covering 20 pixels, found 5"),
    (lambda d: d["annotations"][1]["areas"].__setitem__(0, -1),
     r"areas\[0\]: expected a finite number >= 0, found -1"),
])
def test_wrong_types_and_values_name_file_path_expected_found(tmp_path: Path, breakage: Any,
                                                              message: str) -> None:
    data = _vis_json()
    breakage(data)
    error = _convert_text(tmp_path, json.dumps(data))
    assert error.problem.startswith("$")
    assert re.search(message, str(error)), str(error)


def test_nan_built_in_memory_is_refused_as_well() -> None:
    data = _vis_json()
    data["annotations"][1]["areas"][1] = float("nan")
    with pytest.raises(WorkflowInputError, match=r"areas\[1\]: expected a finite number >= 0, found nan"):
        videos_to_frames(data, where="mem.json")


# --- silently wrong data ----------------------------------------------------------------------


def test_no_usable_annotation_is_refused(tmp_path: Path) -> None:
    data = _vis_json()
    for obj in data["annotations"]:
        obj["segmentations"] = [None, None]
        obj["bboxes"] = [None, None]
        obj["areas"] = [None, None]
    error = _convert_text(tmp_path, json.dumps(data))
    assert "expected at least one object with a segmentation" in str(error)


def test_split_without_annotated_video_is_refused(tmp_path: Path) -> None:
    build_vis(tmp_path / "raw", n_videos=3, frames=2, empty_videos=(1, 2))
    convert_video_annotations(tmp_path / "raw/instances.json", tmp_path / "frames.json")
    outputs = {s: tmp_path / f"{s}/instances.json" for s in ("train", "valid", "test")}
    with pytest.raises(WorkflowInputError, match="expected annotated videos in every split"):
        split_frames_file(tmp_path / "frames.json", outputs, (0.8, 0.9), 123)
    assert not any(p.exists() for p in outputs.values())


def test_split_whose_every_box_has_zero_size_gives_no_crop_and_stops(tmp_path: Path) -> None:
    instances, images = _frames_file(tmp_path, "v/00000.png")
    data = json.loads(instances.read_text())
    data["annotations"][0]["bbox"] = [1.0, 1.0, 0.5, 2.0]
    instances.write_text(json.dumps(data))
    with pytest.raises(WorkflowInputError, match="expected at least one annotation to crop"):
        make_crops(instances, images, instances.parent)
    assert sorted(p.name for p in instances.parent.iterdir()) == ["instances.json"]


@pytest.mark.parametrize("key", ["annotations", "videos", "categories"])
def test_duplicate_ids_are_refused(tmp_path: Path, key: str) -> None:
    data = _vis_json()
    data[key][1]["id"] = data[key][0]["id"]
    error = _convert_text(tmp_path, json.dumps(data))
    assert f"$.{key}[1].id: expected a unique id" in str(error)


def test_duplicate_ids_in_a_frame_level_file_are_refused(tmp_path: Path) -> None:
    instances, images = _frames_file(tmp_path, "v/00000.png")
    data = json.loads(instances.read_text())
    data["annotations"].append(dict(data["annotations"][0], object_id=2))
    instances.write_text(json.dumps(data))
    with pytest.raises(WorkflowInputError, match=r"\$\.annotations\[1\]\.id: expected a unique"):
        make_crops(instances, images, instances.parent)


def test_box_far_outside_the_frame_is_refused_a_little_outside_is_kept() -> None:
    data = _vis_json()
    # Within the tolerance (5% of the side, at least 2 px): accepted.
    data["annotations"][1]["bboxes"][1] = [-1.5, 0, 6.4, 4]
    assert len(videos_to_frames(copy.deepcopy(data), where="f.json")["annotations"]) == 3
    data["annotations"][1]["bboxes"][1] = [40, 40, 2, 2]
    with pytest.raises(WorkflowInputError, match=r"bboxes\[1\]: expected a box inside the 5x4"):
        videos_to_frames(data, where="f.json")


def test_detection_boxes_far_outside_their_image() -> None:
    dets = [{"label": "a person", "confidence": 0.9, "box": [0, 0, 10, 10]},
            {"label": "a dog", "confidence": 0.5, "box": [500, 500, 600, 640]}]
    check_boxes_inside(dets[:1], 100, 100, "d.json", "x.jpg")
    with pytest.raises(WorkflowInputError, match=r"d.json: x.jpg\[1\].box: expected a box inside"):
        check_boxes_inside(dets, 100, 100, "d.json", "x.jpg")
    # A detector box may overhang by half a side (centre and size are independent
    # sigmoids); a polygon, drawn inside the image, only by the tight tolerance.
    check_boxes_inside([{**dets[0], "box": [-50, -12, 150, 100]}], 100, 100, "d.json", "x.jpg")
    with pytest.raises(WorkflowInputError, match=r"tolerance 50% of a side"):
        check_boxes_inside([{**dets[0], "box": [-51, 0, 10, 10]}], 100, 100, "d.json", "x.jpg")
    tolerance = max(BOX_TOLERANCE * 100, 2)
    check_boxes_inside([{**dets[0], "mask_polygon": [[-tolerance, 0], [100 + tolerance, 0], [0, 5]]}],
                       100, 100, "d.json", "x.jpg")
    polygon = [{**dets[0], "mask_polygon": [[0, 0], [300, 0], [0, 5]]}]
    with pytest.raises(WorkflowInputError, match=r"x.jpg\[0\].mask_polygon"):
        check_boxes_inside(polygon, 100, 100, "d.json", "x.jpg")


def test_youtube_vis_2019_file_under_the_2021_person_id(tmp_path: Path) -> None:
    data = _vis_json()
    # 2019 numbering: person is 1, 26 is owl.
    data["categories"] = [{"id": 1, "name": "person"}, {"id": 26, "name": "owl"}]
    error = _convert_text(tmp_path, json.dumps(data), person_category=26)
    assert "category 26 is 'owl'" in str(error) and "'person' is id 1" in str(error)
    # The same file under the id its own categories give is accepted.
    source = tmp_path / "instances.json"
    convert_video_annotations(source, tmp_path / "frames.json", person_category=1)


def test_ovis_person_is_named_with_a_capital(tmp_path: Path) -> None:
    data = _vis_json()
    data["categories"] = [{"id": 1, "name": "Person"}, {"id": 26, "name": "Bird"}]
    source = tmp_path / "ovis.json"
    source.write_text(json.dumps(data))
    convert_video_annotations(source, tmp_path / "frames.json", person_category=1)
    with pytest.raises(WorkflowInputError, match="found category 26 is 'Bird'"):
        convert_video_annotations(source, tmp_path / "frames2.json", person_category=26)


@pytest.mark.parametrize("name, naming", [
    ("0001_c1s1_000151.jpg", "market1501"),      # box number missing
    ("1_c1s1_000151_00.jpg", "market1501"),      # identity not 4 digits
    ("0001_c7s1_000151_00.jpg", "market1501"),   # Market has cameras 1-6
    ("0001_c1_1.jpg", "market1501"),             # a CUHK03-NP name in Market
    ("-1_c1_1.png", "cuhk03"),                   # CUHK03-NP has no junk
    ("0001_c3_1.png", "cuhk03"),                 # CUHK03-NP has cameras 1 and 2
    ("person.png", "any"),
])
def test_person_names_off_the_official_pattern(tmp_path: Path, name: str, naming: str) -> None:
    root = tmp_path / "raw"
    write_png(root / "query" / name, np.zeros((16, 8, 3), np.uint8))
    write_png(root / "query_seg" / f"{Path(name).stem}.png", np.full((16, 8), 255, np.uint8))
    with pytest.raises(WorkflowInputError, match="expected a file name") as info:
        prepare_person_set(root, root, tmp_path / "out", naming=naming)  # type: ignore[arg-type]
    assert name in str(info.value) and info.value.where == str(root / "query")


def test_official_junk_and_distractor_names_pass() -> None:
    from overlearning.data.person_sets import NAME_PATTERNS
    for stem in ("-1_c1s1_000401_03", "0000_c3s1_000551_01", "1501_c6s4_001877_02"):
        assert NAME_PATTERNS["market1501"].fullmatch(stem)
    assert NAME_PATTERNS["cuhk03"].fullmatch("1467_c2_10")


def test_person_camera_no_longer_becomes_minus_one() -> None:
    assert person_camera("0001_c3s1_000151_00.jpg") == 3
    with pytest.raises(WorkflowInputError, match="expected <id>_c<camera>"):
        person_camera("0001_cam3.jpg")


def test_embedding_file_with_mistyped_arrays(tmp_path: Path) -> None:
    path = tmp_path / "e.npz"
    np.savez(path, embeddings=np.zeros((2, 3), np.float32), labels=np.array([0.5, 1.0]),
             files=np.array(["a", "b"]), persons=np.array([True, False]),
             cameras=np.array([1, 2]))
    with pytest.raises(WorkflowInputError, match="labels: expected a 1-d array of integers"):
        load_embedding_set(path)


# --- images -------------------------------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header declares ``width`` x ``height`` (its data is a stub)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(30000, 30000), (8000, 8000)])
def test_huge_declared_size_is_refused_from_the_header(tmp_path: Path, width: int,
                                                       height: int) -> None:
    path = tmp_path / "bomb.png"
    _png_header_only(path, width, height)
    assert path.stat().st_size < 1000
    start = time.perf_counter()
    with pytest.raises(WorkflowInputError, match="max_image_pixels") as info:
        image_io.read_rgb(path)
    assert time.perf_counter() - start < 1.0  # nothing was decoded
    assert info.value.where == str(path)
    assert f"{width}x{height}" in str(info.value) or f"{width * height} pixels" in str(info.value)
    with pytest.raises(WorkflowInputError, match="max_image_pixels"):
        image_io.image_size(path)


def test_configured_image_limit_applies(tmp_path: Path) -> None:
    path = tmp_path / "frame.png"
    write_png(path, frame_pixels(6, 8, seed=1))
    try:
        image_io.set_max_image_pixels(47)
        with pytest.raises(WorkflowInputError, match="at most 47 pixels.*found 8x6 = 48"):
            image_io.read_rgb(path)
        image_io.set_max_image_pixels(48)
        assert image_io.read_rgb(path).shape == (6, 8, 3)
    finally:
        image_io.set_max_image_pixels(image_io.DEFAULT_MAX_IMAGE_PIXELS)


def test_truncated_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    write_png(path, frame_pixels(6, 8, seed=1))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(WorkflowInputError, match="corrupt or unreadable") as info:
        image_io.read_rgb(path)
    assert info.value.where == str(path)


# --- temporaries of killed jobs -------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_processes_are_removed_nothing_else(tmp_path: Path) -> None:
    final = tmp_path / "foregroundImages_cropped"
    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".foregroundImages_cropped.tmp-{dead}",
             tmp_path / f".foregroundImages_cropped.partial-{dead}"]
    for folder in stale:
        (folder / "v").mkdir(parents=True)
        (folder / "v/1.jpg").write_bytes(b"x")
    live = tmp_path / f".foregroundImages_cropped.tmp-{alive}"
    live.mkdir()
    other = [tmp_path / f".fg_instances.json.tmp-{dead}", tmp_path / "notes.txt",
             tmp_path / f".foregroundImages_cropped_old.tmp-{dead}"]
    for path in other:
        path.write_text("keep")
    with atomic_directory(final) as tmp:
        (tmp / "a.jpg").write_bytes(b"y")
    assert not any(p.exists() for p in stale)
    assert live.exists() and all(p.exists() for p in other)
    assert sorted(p.name for p in final.iterdir()) == ["a.jpg"]
    assert remove_stale_temporaries(tmp_path / "fg_instances.json") == [other[0]]


def test_extraction_removes_a_killed_runs_partial_folder(tmp_path: Path) -> None:
    source = tmp_path / "annotations.json"
    source.write_text("{}")
    out = tmp_path / "raw/ovis"
    leftover = tmp_path / f"raw/.ovis.partial-{_dead_pid()}"
    (leftover / "train").mkdir(parents=True)
    extract_archives([ArchiveSource(source)], out)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["ovis"]
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json"]


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from overlearning.core.atomic import atomic_directory
    with atomic_directory(Path(sys.argv[1])) as tmp:
        (tmp / "half.jpg").write_bytes(b"x")
        print("writing", flush=True)
        time.sleep(60)
""")


def _start_writer(final: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(final)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    return proc


def test_killed_job_then_rerun_leaves_no_temporary(tmp_path: Path) -> None:
    final = tmp_path / "split/foregroundImages_cropped"
    proc = _start_writer(final)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = [p.name for p in final.parent.iterdir()]
    assert leftovers == [f".foregroundImages_cropped.tmp-{proc.pid}"]  # SIGKILL: no clean-up
    with atomic_directory(final) as tmp:
        (tmp / "whole.jpg").write_bytes(b"y")
    assert sorted(p.name for p in final.parent.iterdir()) == ["foregroundImages_cropped"]


def test_terminated_job_removes_its_own_temporary(tmp_path: Path) -> None:
    final = tmp_path / "split/foregroundImages_cropped"
    proc = _start_writer(final)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(final.parent.iterdir()) == []


# --- property-based: random corruptions never give a raw exception -----------------------------

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.integers(10**12, 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "a/0.png", "../escape.png", "/etc/passwd", "C:\\x.png", "person",
                     "\x00"]),
    st.just([]), st.just({}), st.lists(st.integers(-2, 30), max_size=5),
    st.lists(st.floats(-10, 50), min_size=4, max_size=4),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value (the runs inside an RLE ``counts`` count as one place)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += [prefix + (key,)] if key == "counts" else _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, prefix + (i,))
    return found


@st.composite
def _corrupted(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """``valid`` with 1-3 random edits anywhere: a value replaced, a key or an item removed
    or duplicated."""
    data: Any = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        places = [p for p in _paths(data) if p]
        if not places or draw(st.integers(0, 19)) == 19:
            data = draw(_LEAVES)  # now and then the whole document
            continue
        path = draw(st.sampled_from(places))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "delete", "duplicate"]))
        if action == "replace":
            parent[key] = draw(_LEAVES)
        elif action == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        else:
            parent[f"{key}_copy"] = copy.deepcopy(parent[key])
    return data


def _valid_vis_dataset(root: Path) -> dict[str, Any]:
    data = _vis_json()
    for video in data["videos"]:
        for name in video["file_names"]:
            write_png(root / "images" / name, frame_pixels(4, 5, seed=len(name)))
    return data


_FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@_FUZZ
@given(st.data())
def test_corrupted_youtube_vis_json_gives_a_result_or_our_error(tmp_path: Path,
                                                                data: st.DataObject) -> None:
    root = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    valid = _valid_vis_dataset(root)
    corrupted = data.draw(_corrupted(valid))
    source = root / "instances.json"
    source.write_text(json.dumps(corrupted))
    out = root / "out"
    try:
        convert_video_annotations(source, out / "frames.json", person_category=26)
        make_crops(out / "frames.json", root / "images", out / "split")
    except WorkflowInputError as error:
        # Names the JSON file (or, for a frame, the image file) inside this case's folder.
        assert error.where.startswith(str(root)) and "\n" not in str(error)
    else:
        # A valid result: every crop inside the output folder, indexes readable.
        index = read_json(out / "split/fg_instances_cropped.json")
        assert index["images"] and all(
            (out / "split/foregroundImages_cropped" / i["file_name"]).is_file()
            for i in index["images"])
    inputs = {"instances.json", *(f"images/{n}" for v in valid["videos"] for n in v["file_names"])}
    assert all(name.startswith("out/") for name in set(_tree(root)) - inputs)


def _valid_detections() -> dict[str, Any]:
    return {"a/0.jpg": [{"label": "a person", "confidence": 0.9, "box": [1.0, 2.0, 30.0, 40.0]},
                        {"label": "a dog", "confidence": 0.25, "box": [0, 0, 5, 5]}],
            "b.jpg": []}


@_FUZZ
@given(_corrupted(_valid_detections()))
def test_corrupted_detections_json_gives_a_result_or_our_error(tmp_path: Path,
                                                               corrupted: Any) -> None:
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(corrupted))
    try:
        detections = load_detections(path)
        for image, dets in detections.items():
            check_boxes_inside(dets, 64, 64, path, image)
    except WorkflowInputError as error:
        assert error.where == str(path) and "\n" not in str(error)
        return
    for image, dets in detections.items():
        contained(tmp_path, image, path, "image")
        for det in dets:
            assert 0.0 <= det["confidence"] <= 1.0 and len(det["box"]) == 4


def test_dataset_paths_in_the_config_stay_inside_the_dataset(tmp_path: Path) -> None:
    import yaml

    from overlearning.workflow.config import ConfigError, check_dataset_sources

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for source in config["datasets"].values():
        source["archives"], source["directory"] = [], str(tmp_path)
    check_dataset_sources(config)
    config["datasets"]["youtube_vis"]["images"] = "../../elsewhere/JPEGImages"
    config["datasets"]["market1501"]["masks"] = "/masks"
    with pytest.raises(ConfigError) as info:
        check_dataset_sources(config)
    assert "datasets.youtube_vis.images: '..' in path" in str(info.value)
    assert "datasets.market1501.masks: absolute path '/masks'" in str(info.value)


def test_rerun_of_the_crop_rule_removes_a_dead_jobs_folder(tmp_path: Path) -> None:
    instances, images = _frames_file(tmp_path, "v/00000.png")
    leftover = instances.parent / f".foregroundImages_cropped.zip.tmp-{_dead_pid()}"
    leftover.write_bytes(b"PK\x03\x04 half a pack")
    make_crops(instances, images, instances.parent)
    assert sorted(p.name for p in instances.parent.iterdir()) == [
        "fg_instances.json", "fg_instances_cropped.json", "foregroundImages_cropped.zip",
        "instances.json"]


def test_rerun_of_a_training_checkpoint_removes_a_dead_jobs_half_file(tmp_path: Path) -> None:
    from overlearning.train.checkpoints import save_checkpoint

    path = tmp_path / "models/ms/checkpoint.pt"
    path.parent.mkdir(parents=True)
    half = path.with_name(f".checkpoint.pt.tmp-{_dead_pid()}")
    half.write_bytes(b"half a checkpoint")
    save_checkpoint(path, {"epoch": 1})
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def test_rewriting_a_json_output_removes_a_dead_jobs_half_file(tmp_path: Path) -> None:
    from overlearning.core.atomic import write_json

    half = tmp_path / f".frames.json.tmp-{_dead_pid()}"
    half.write_text('{"videos": [')
    neighbour = tmp_path / f".objects.json.tmp-{_dead_pid()}"
    neighbour.write_text("{")
    write_json(tmp_path / "frames.json", {"videos": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == [neighbour.name, "frames.json"]

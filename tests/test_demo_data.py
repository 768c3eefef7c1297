"""The demo downloads have the official shapes, parse with pycocotools, and are deterministic.

One generation at the demo config's sizes (about two seconds) is shared by the module; a
second one checks that the bytes repeat.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools import mask as mask_utils

from overlearning.core.errors import WorkflowInputError
from overlearning.data.archives import ArchiveSource, extract_archives
from overlearning.demo.downloads import DEMO_FILES, ZIP_TIME, DemoSizes, check_expected
from overlearning.demo.vis import uncompressed_rle
from scripts.make_demo_downloads import main as make_main
from tests.conftest import REPO

# pycocotools 2.0.11 warns inside its own decode() under numpy 2; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CUHK03_NAME = re.compile(r"^cuhk03-np/(labeled|detected)/(bounding_box_train|bounding_box_test"
                         r"|query)/(\d{4})_c(\d)_(\d+)\.png$")
MARKET_NAME = re.compile(r"^Market-1501-v15\.09\.15/(bounding_box_train|bounding_box_test|query)"
                         r"/(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
OCCLUSION = {"no_occlusion", "slight_occlusion", "severe_occlusion"}


def _config() -> dict:
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    paper["demo"].update(demo["demo"])
    paper["datasets"] = demo["datasets"]
    return paper


CONFIG = _config()
SIZES = DemoSizes(**{k: v for k, v in CONFIG["demo"].items() if k not in ("generate", "out")})


def _generate(out: Path) -> None:
    s = SIZES
    assert make_main([
        "--out", str(out), "--seed", str(CONFIG["seed"]),
        "--vis-videos", str(s.vis_videos), "--vis-frames", str(s.vis_frames),
        "--ovis-videos", str(s.ovis_videos), "--ovis-frames", str(s.ovis_frames),
        "--persons", str(s.persons), "--cameras", str(s.cameras),
        "--images-per-camera", str(s.images_per_camera),
        "--image-size", str(s.image_size[0]), str(s.image_size[1]),
        "--expect", *[str(out / name) for name in DEMO_FILES],
    ]) == 0


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo-downloads")
    _generate(root)
    return root


def _zip(path: Path) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def _image(zf: zipfile.ZipFile, name: str) -> np.ndarray:
    with Image.open(io.BytesIO(zf.read(name))) as image:
        return np.asarray(image)


def _decode_uncompressed(seg: dict) -> np.ndarray:
    """Hand decoder of YouTube-VIS masks: alternating runs, background first, column-major."""
    h, w = seg["size"]
    values = np.arange(len(seg["counts"])) % 2
    return np.repeat(values, seg["counts"]).reshape((h, w), order="F").astype(np.uint8)


# ---- the files the config expects ---------------------------------------------------------


def test_generator_makes_exactly_the_configured_archives(out: Path) -> None:
    demo_out = Path(CONFIG["demo"]["out"])
    configured = sorted(str(Path(a["path"]).relative_to(demo_out))
                        for ds in CONFIG["datasets"].values() for a in ds["archives"])
    assert configured == sorted(DEMO_FILES)
    made = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert made == sorted(DEMO_FILES)


def test_unknown_expected_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError, match="demo generator does not make this file"):
        check_expected(tmp_path, [tmp_path / "ovis" / "valid.zip"])


def test_two_runs_are_byte_identical(out: Path, tmp_path: Path) -> None:
    _generate(tmp_path)
    for name in DEMO_FILES:
        assert hashlib.sha256((out / name).read_bytes()).digest() == hashlib.sha256(
            (tmp_path / name).read_bytes()).digest(), name


def test_zip_entries_are_sorted_with_fixed_times(out: Path) -> None:
    for name in DEMO_FILES:
        if name.endswith(".zip"):
            infos = _zip(out / name).infolist()
            assert [i.filename for i in infos] == sorted(i.filename for i in infos)
            assert {i.date_time for i in infos} == {ZIP_TIME}


# ---- YouTube-VIS 2021 ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vis(out: Path) -> tuple[zipfile.ZipFile, dict]:
    zf = _zip(out / "youtube_vis_2021/train.zip")
    return zf, json.loads(zf.read("train/instances.json"))


def test_youtube_vis_layout_and_video_fields(vis: tuple[zipfile.ZipFile, dict]) -> None:
    zf, inst = vis
    h, w = SIZES.image_size
    frames = {n for n in zf.namelist() if n.endswith(".jpg")}
    assert len(inst["videos"]) == SIZES.vis_videos
    listed = set()
    for video in inst["videos"]:
        assert {"id", "width", "height", "length", "file_names"} <= set(video)
        assert (video["height"], video["width"]) == (h, w)
        assert video["length"] == len(video["file_names"]) == SIZES.vis_frames
        for f, name in enumerate(video["file_names"]):
            assert re.fullmatch(rf"[0-9a-f]{{10}}/{5 * f:05d}\.jpg", name)
            listed.add(f"train/JPEGImages/{name}")
    assert listed == frames
    assert _image(zf, sorted(frames)[0]).shape == (h, w, 3)
    assert [v["id"] for v in inst["videos"]] == list(range(1, SIZES.vis_videos + 1))


def test_youtube_vis_categories(vis: tuple[zipfile.ZipFile, dict]) -> None:
    categories = vis[1]["categories"]
    assert len(categories) == 40
    assert {c["id"]: c["name"] for c in categories}[26] == "person"
    assert {c["id"] for c in categories} == set(range(1, 41))


def test_youtube_vis_masks_are_uncompressed_rle_that_pycocotools_reads(
        vis: tuple[zipfile.ZipFile, dict]) -> None:
    _, inst = vis
    h, w = SIZES.image_size
    length = {v["id"]: v["length"] for v in inst["videos"]}
    nulls = 0
    for ann in inst["annotations"]:
        assert {"id", "video_id", "category_id", "iscrowd", "segmentations", "bboxes",
                "areas"} <= set(ann)
        n = length[ann["video_id"]]
        assert len(ann["segmentations"]) == len(ann["bboxes"]) == len(ann["areas"]) == n
        for seg, box, area in zip(ann["segmentations"], ann["bboxes"], ann["areas"], strict=True):
            if seg is None:
                assert box is None and area is None
                nulls += 1
                continue
            assert seg["size"] == [h, w]
            assert isinstance(seg["counts"], list) and all(isinstance(c, int) for c in seg["counts"])
            assert sum(seg["counts"]) == h * w
            rle = mask_utils.frPyObjects(seg, h, w)
            mask = mask_utils.decode(rle)
            np.testing.assert_array_equal(mask, _decode_uncompressed(seg))
            assert area == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            assert box == [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                           float(ys.max() - ys.min() + 1)]
    assert nulls > 0, "some objects must be absent in some frames"


def test_uncompressed_rle_round_trips_through_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for shape in [(7, 5), (16, 9)]:
        for starts_with_object in (False, True):
            mask = (rng.random(shape) < 0.4).astype(np.uint8)
            mask[0, 0] = starts_with_object
            rle = uncompressed_rle(mask)
            assert (rle["counts"][0] == 0) == starts_with_object
            decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *shape))
            np.testing.assert_array_equal(decoded, mask)
    assert uncompressed_rle(np.array([[0, 1], [0, 1]], np.uint8))["counts"] == [2, 2]


def test_youtube_vis_content_is_useful_downstream(vis: tuple[zipfile.ZipFile, dict]) -> None:
    _, inst = vis
    per_video = defaultdict(list)
    for ann in inst["annotations"]:
        per_video[ann["video_id"]].append(ann["category_id"])
    empty = [v["id"] for v in inst["videos"] if v["id"] not in per_video]
    assert len(empty) >= 1, "one video without annotations (the split must pair by id)"
    assert empty[0] not in (1, SIZES.vis_videos), "the empty video sits mid-list"
    with_person = sum(26 in cats for cats in per_video.values())
    assert with_person >= 0.3 * len(per_video)
    assert len({c for cats in per_video.values() for c in cats}) >= 10
    assert np.mean([len(c) for c in per_video.values()]) >= 2


def test_valid_and_test_videos_of_the_split_show_persons(vis: tuple[zipfile.ZipFile, dict]) -> None:
    """Person validation (training) and person queries (evaluation) need persons there."""
    _, inst = vis
    from overlearning.data.vis_split import cut_points, shuffled_video_order

    ids = [v["id"] for v in inst["videos"]]
    order = shuffled_video_order(ids, CONFIG["preparation"]["split_seed"])
    first, second = cut_points(len(ids), CONFIG["preparation"]["split"])
    person_frames = defaultdict(int)
    for ann in inst["annotations"]:
        if ann["category_id"] == 26:
            person_frames[ann["video_id"]] += sum(s is not None for s in ann["segmentations"])
    for part in (order[first:second], order[second:]):
        assert sum(person_frames[v] for v in part) >= 2, part


def _crop_features(zf: zipfile.ZipFile, root: str, videos: dict, anns: list[dict]) -> tuple:
    """Mean and spread of colour over each visible object mask, per frame."""
    features, labels = [], []
    images: dict[str, np.ndarray] = {}
    for ann in anns:
        names = videos[ann["video_id"]]["file_names"]
        for name, seg in zip(names, ann["segmentations"], strict=True):
            if seg is None:
                continue
            if isinstance(seg["counts"], list):
                seg = mask_utils.frPyObjects(seg, *seg["size"])
            else:
                seg = {"size": seg["size"], "counts": seg["counts"].encode()}
            mask = mask_utils.decode(seg).astype(bool)
            if mask.sum() < 20:
                continue
            image = images.setdefault(name, _image(zf, f"{root}{name}").astype(np.float64))
            pixels = image[mask]
            features.append(np.concatenate([pixels.mean(0), pixels.std(0)]))
            labels.append(ann["id"])
    return np.asarray(features), np.asarray(labels)


def _nearest_neighbour_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    d = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels[d.argmin(1)] == labels).mean())


def test_each_vis_object_keeps_its_look_across_frames(vis: tuple[zipfile.ZipFile, dict]) -> None:
    zf, inst = vis
    videos = {v["id"]: v for v in inst["videos"]}
    features, labels = _crop_features(zf, "train/JPEGImages/", videos, inst["annotations"])
    # Random looks per frame would give about 1 / (number of objects) here.
    assert _nearest_neighbour_accuracy(features, labels) > 0.8


# ---- OVIS ---------------------------------------------------------------------------------


def test_ovis_layout_and_compressed_rle(out: Path) -> None:
    zf = _zip(out / "ovis/train.zip")
    inst = json.loads((out / "ovis/annotations_train.json").read_text())
    h, w = SIZES.image_size
    assert "annotations_train.json" not in " ".join(zf.namelist())
    frames = {n for n in zf.namelist() if n.endswith(".jpg")}
    listed = {f"train/{name}" for v in inst["videos"] for name in v["file_names"]}
    assert listed == frames and len(inst["videos"]) == SIZES.ovis_videos
    for video in inst["videos"]:
        assert video["length"] == len(video["file_names"]) == SIZES.ovis_frames
        assert [n.split("/")[1] for n in video["file_names"]] == [
            f"img_{i:07d}.jpg" for i in range(1, SIZES.ovis_frames + 1)]
    assert len(inst["categories"]) == 25
    assert {c["id"]: c["name"] for c in inst["categories"]}[1] == "Person"
    assert any(a["category_id"] == 1 for a in inst["annotations"])
    levels = set()
    for ann in inst["annotations"]:
        n = len(ann["segmentations"])
        assert len(ann["bboxes"]) == len(ann["areas"]) == len(ann["occlusion"]) == n
        for seg, box, area, occ in zip(ann["segmentations"], ann["bboxes"], ann["areas"],
                                       ann["occlusion"], strict=True):
            if seg is None:
                assert box is None and area is None and occ is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [h, w]
            rle = {"size": seg["size"], "counts": seg["counts"].encode()}
            mask = mask_utils.decode(rle)
            assert mask.shape == (h, w) and mask.sum() > 0
            assert box == [float(v) for v in mask_utils.toBbox(rle)]
            assert area == pytest.approx(box[2] * box[3])  # OVIS: box area, not mask area
            assert occ in OCCLUSION
            levels.add(occ)
    assert len(levels) >= 2


# ---- CUHK03-NP and Market-1501 ----------------------------------------------------------


def _protocol_checks(names: list[tuple[str, int, int]]) -> None:
    """(folder, identity, camera) triples of one person set."""
    ids = defaultdict(set)
    gallery_cams = defaultdict(set)
    for folder, pid, cam in names:
        ids[folder].add(pid)
        if folder == "bounding_box_test":
            gallery_cams[pid].add(cam)
    test_ids = ids["query"]
    assert len(test_ids) == SIZES.persons
    assert not ids["bounding_box_train"] & (ids["bounding_box_test"] | test_ids)
    for folder, pid, cam in names:
        if folder == "query":
            assert gallery_cams[pid] - {cam}, f"query {pid} c{cam} has no other-camera match"


def _masks_match(images: zipfile.ZipFile, masks: zipfile.ZipFile, suffix: str) -> None:
    image_names = [n for n in images.namelist() if n.endswith(suffix)]
    expected = sorted(re.sub(r"/([^/]+)/([^/]+)\.\w+$", r"/\1_seg/\2.png", n)
                      for n in image_names)
    assert sorted(n for n in masks.namelist() if n.endswith(".png")) == expected
    for name in image_names[:: max(1, len(image_names) // 25)]:
        mask_name = re.sub(r"/([^/]+)/([^/]+)\.\w+$", r"/\1_seg/\2.png", name)
        image, mask = _image(images, name), _image(masks, mask_name)
        assert mask.shape == image.shape[:2]
        assert set(np.unique(mask)) == {0, 255}


def _person_nn_accuracy(images: zipfile.ZipFile, masks: zipfile.ZipFile,
                        names: list[str], label: re.Pattern) -> tuple[float, int]:
    """Query -> gallery nearest neighbour on masked colour statistics (other cameras only)."""
    rows = []
    for name in names:
        match = label.match(name)
        assert match is not None
        folder, pid, cam = match.group("folder"), match.group("pid"), match.group("cam")
        if pid in ("-1", "0000") or folder == "bounding_box_train":
            continue
        mask_name = re.sub(r"/([^/]+)/([^/]+)\.\w+$", r"/\1_seg/\2.png", name)
        fg = _image(masks, mask_name) > 0
        pixels = _image(images, name)[fg].astype(np.float64)
        top = pixels[: len(pixels) // 2]
        rows.append((folder, int(pid), int(cam),
                     np.concatenate([top.mean(0), pixels.mean(0), pixels.std(0)])))
    queries = [r for r in rows if r[0] == "query"]
    gallery = [r for r in rows if r[0] == "bounding_box_test"]
    hits = 0
    for _, pid, cam, feature in queries:
        candidates = [g for g in gallery if g[2] != cam]
        best = min(candidates, key=lambda g: float(((g[3] - feature) ** 2).sum()))
        hits += best[1] == pid
    return hits / len(queries), len({r[1] for r in gallery})


def test_cuhk03_names_protocol_and_masks(out: Path) -> None:
    images = _zip(out / "cuhk03/cuhk03-np.zip")
    masks = _zip(out / "cuhk03/cuhk03-np-mgcam-masks.zip")
    files = [n for n in images.namelist() if not n.endswith("/")]
    parsed = [CUHK03_NAME.match(n) for n in files]
    assert all(parsed), [n for n, p in zip(files, parsed, strict=True) if not p][:5]
    per_kind = defaultdict(set)
    for p in parsed:
        per_kind[p.group(1)].add(p.group(0).split("/", 2)[2])
    assert per_kind["labeled"] == per_kind["detected"]
    _protocol_checks([(p.group(2), int(p.group(3)), int(p.group(4)))
                      for p in parsed if p.group(1) == "labeled"])
    assert {int(p.group(4)) for p in parsed} == set(range(1, SIZES.cameras + 1))
    _masks_match(images, masks, ".png")
    accuracy, persons = _person_nn_accuracy(
        images, masks, [n for n in files if "/labeled/" in n],
        re.compile(r"cuhk03-np/labeled/(?P<folder>\w+)/(?P<pid>\d{4})_c(?P<cam>\d)_"))
    assert accuracy > 3 / persons, "identities must look alike across cameras"


def test_market_names_junk_distractors_protocol_and_masks(out: Path) -> None:
    images = _zip(out / "market1501/Market-1501-v15.09.15.zip")
    masks = _zip(out / "market1501/Market-1501-mgcam-masks.zip")
    files = [n for n in images.namelist() if not n.endswith("/")]
    parsed = [MARKET_NAME.match(n) for n in files]
    assert all(parsed), [n for n, p in zip(files, parsed, strict=True) if not p][:5]
    special = [(p.group(1), p.group(2)) for p in parsed if p.group(2) in ("-1", "0000")]
    assert {folder for folder, _ in special} == {"bounding_box_test"}
    assert {label for _, label in special} == {"-1", "0000"}
    assert len(set(files)) == len(files)
    _protocol_checks([(p.group(1), int(p.group(2)), int(p.group(3)))
                      for p in parsed if p.group(2) not in ("-1", "0000")])
    assert _image(images, files[0]).shape == (128, 64, 3)
    _masks_match(images, masks, ".jpg")
    accuracy, persons = _person_nn_accuracy(
        images, masks, files,
        re.compile(r"Market-1501-v15\.09\.15/(?P<folder>\w+)/(?P<pid>-1|\d{4})_c(?P<cam>\d)"))
    assert accuracy > 3 / persons, "identities must look alike across cameras"


# ---- they go through the real extraction ----------------------------------------------------


def test_demo_downloads_extract_into_the_configured_layout(out: Path, tmp_path: Path) -> None:
    for dataset, source in CONFIG["datasets"].items():
        demo_out = Path(CONFIG["demo"]["out"])
        archives = [ArchiveSource(out / Path(a["path"]).relative_to(demo_out))
                    for a in source["archives"]]
        root = tmp_path / dataset
        extract_archives(archives, root)
        assert (root / source["images"]).is_dir(), dataset
        if "annotations" in source:
            assert (root / source["annotations"]).is_file(), dataset
        if "masks" in source:
            seg = sorted((root / source["masks"]).rglob("query_seg"))
            assert seg and all(any(p.iterdir()) for p in seg), dataset

"""Upper-clothes probes with tiny randomly initialised GroundingDINO and SAM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from overlearning.core.image_io import image_names as folder_image_names
from overlearning.core.image_io import read_rgb
from overlearning.core.packs import open_pack
from overlearning.detect.clothes import clothes_probes, masked_crop, run_clothes_probe
from overlearning.detect.grounding import load_detector
from overlearning.detect.segmentation import polygon_to_mask
from overlearning.models.detectors import load_sam
from tests.detector_fixtures import (
    GARMENTS,
    IMAGE_SIZE,
    MAX_IMAGE_SIZE,
    TINY_MODELS,
    make_cache,
    one_torch_thread,
    write_person_queries,
)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def models(cache: Path):
    def detector(box_threshold: float):
        return load_detector(TINY_MODELS, cache, GARMENTS, box_threshold, 0.1, IMAGE_SIZE,
                             MAX_IMAGE_SIZE)
    return detector, load_sam(TINY_MODELS, cache)


@pytest.fixture
def queries(tmp_path: Path) -> Path:
    return write_person_queries(tmp_path / "foreground_query")


def test_masked_crop_is_the_mask_box_with_black_outside() -> None:
    image = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    mask = np.zeros((6, 5), dtype=bool)
    mask[1, 2] = mask[3, 1] = mask[3, 3] = True
    crop = masked_crop(image, mask)
    assert crop.shape == (3, 3, 3)
    expected = np.zeros((3, 3, 3), dtype=np.uint8)
    expected[0, 1] = image[1, 2]
    expected[2, 0] = image[3, 1]
    expected[2, 2] = image[3, 3]
    assert np.array_equal(crop, expected)
    assert masked_crop(image, np.zeros((6, 5), dtype=bool)) is None


def test_probe_is_the_best_garment_masked_and_cropped(models, queries: Path,
                                                      tmp_path: Path) -> None:
    detector, sam = models
    names = folder_image_names(queries)
    out = tmp_path / "probes" / "clothes.zip"
    record = clothes_probes(detector(0.2), sam, queries, names, out, mask_threshold=0.0)
    assert record["summary"]["cropped"] == 2 and record["summary"]["images"] == 2
    assert open_pack(out).names() == names
    for name in names:
        entry = record["images"][name]
        assert entry["outcome"] == "cropped" and entry["selected"] == 0
        confidences = [d["confidence"] for d in entry["detections"]]
        assert confidences[0] == max(confidences)
        image = read_rgb(queries / name)
        mask = polygon_to_mask(entry["mask_polygon"], image.shape[:2])
        # PNG probes are lossless: the file is exactly the masked crop of the polygon.
        assert np.array_equal(open_pack(out).read_rgb(name), masked_crop(image, mask))


@pytest.mark.parametrize("on_missing", ["skip", "whole"])
def test_images_without_garment_are_counted(models, queries: Path, tmp_path: Path,
                                            on_missing: str) -> None:
    detector, sam = models
    names = folder_image_names(queries)
    out = tmp_path / f"{on_missing}.zip"
    record = clothes_probes(detector(1.0), sam, queries, names, out, mask_threshold=0.0,
                            on_missing=on_missing)
    summary = record["summary"]
    assert summary["no_garment"] == 2 and summary["cropped"] == 0
    if on_missing == "skip":
        assert summary["skipped"] == 2 and open_pack(out).names() == []
    else:
        assert summary["whole"] == 2
        for name in names:
            assert open_pack(out).read_bytes(name) == (queries / name).read_bytes()


def test_empty_garment_mask_follows_on_missing(models, queries: Path, tmp_path: Path) -> None:
    detector, sam = models
    names = folder_image_names(queries)
    record = clothes_probes(detector(0.2), sam, queries, names, tmp_path / "p.zip",
                            mask_threshold=1e9, on_missing="whole")
    assert record["summary"]["empty_mask"] == 2 and record["summary"]["whole"] == 2


def test_run_clothes_probe_writes_pack_and_record(cache: Path, queries: Path,
                                                    tmp_path: Path) -> None:
    clothes = {"method": "grounding_sam", "prompts": GARMENTS, "box_threshold": 0.2,
               "text_threshold": 0.1, "on_missing": "skip"}
    detection = {"image_size": IMAGE_SIZE, "max_image_size": MAX_IMAGE_SIZE, "batch_size": 2}
    segmentation = {"mask_threshold": 0.0, "multimask": "union"}
    out, record = tmp_path / "clothes.zip", tmp_path / "clothes.json"
    summary = run_clothes_probe(queries, out, record, TINY_MODELS, clothes, detection,
                                segmentation, cache)
    assert summary == json.loads(record.read_text())["summary"]
    assert sorted(json.loads(record.read_text())["images"]) == folder_image_names(queries)
    assert open_pack(out).names() == folder_image_names(queries)

"""Partial-person probes (REFERENCE step 6): torso band and the occlusion grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import open_pack, pack_of_files
from overlearning.data.crop_sets import load_person_set
from overlearning.data.probes import half, make_probe, torso_band
from tests.test_prepare_fixtures import write_png


def _rows(height: int, width: int = 3) -> np.ndarray:
    """Row r is filled with value r, so a slice shows which rows it kept."""
    return np.repeat(np.arange(height, dtype=np.uint8)[:, None], width, axis=1)


@pytest.mark.parametrize("height, rows", [
    # Market-1501 height: int(128 * 0.4) = 51 rows off the top, int(128 * 0.575) = 73 off the
    # bottom, leaving rows 51..54.
    (128, list(range(51, 55))),
    # CUHK03-like height 160: 64 off the top, 92 off the bottom, leaving rows 64..67.
    (160, list(range(64, 68))),
    (10, [4]),  # int(4.0) = 4 off the top, int(5.75) = 5 off the bottom: one row left
])
def test_torso_band_matches_the_studys_rounding(height: int, rows: list[int]) -> None:
    band = torso_band(_rows(height), 0.4, 0.575)
    assert band[:, 0].tolist() == rows


def test_torso_band_is_configurable_and_checked() -> None:
    assert torso_band(_rows(10), 0.2, 0.5)[:, 0].tolist() == [2, 3, 4]
    assert torso_band(_rows(10), 0.0, 0.0).shape[0] == 10
    with pytest.raises(ValueError, match="top \\+ bottom < 1"):
        torso_band(_rows(10), 0.6, 0.4)


def test_halves_on_odd_sizes() -> None:
    pixels = np.arange(5 * 3).reshape(5, 3)
    assert half(pixels, "upper_half").tolist() == pixels[:2].tolist()
    assert half(pixels, "lower_half").tolist() == pixels[2:].tolist()
    assert half(pixels, "left_half").tolist() == pixels[:, :1].tolist()
    assert half(pixels, "right_half").tolist() == pixels[:, 1:].tolist()
    # The halves of each pair tile the image exactly.
    assert np.array_equal(np.vstack([half(pixels, "upper_half"), half(pixels, "lower_half")]), pixels)
    assert np.array_equal(np.hstack([half(pixels, "left_half"), half(pixels, "right_half")]), pixels)
    with pytest.raises(ValueError, match="unknown occlusion"):
        half(pixels, "middle")


def _packed(folder: Path) -> Path:
    """The folder's images as a query pack ``<folder>.zip``."""
    pack = folder.with_name(folder.name + ".zip")
    pack_of_files(pack, {p.name: p for p in folder.iterdir()})
    return pack


def _queries(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {"0001_c1s1_000151_00": rng.integers(0, 255, (16, 8, 3), dtype=np.uint8),
              "0002_c2s1_000301_00": rng.integers(0, 255, (15, 7, 3), dtype=np.uint8)}
    for stem, pixels in images.items():
        write_png(folder / f"{stem}.png", pixels)
    return images


@pytest.mark.parametrize("probe, region", [
    ("torso", lambda p: p[int(p.shape[0] * 0.4):p.shape[0] - int(p.shape[0] * 0.575)]),
    ("upper_half", lambda p: p[:p.shape[0] // 2]),
    ("lower_half", lambda p: p[p.shape[0] // 2:]),
    ("left_half", lambda p: p[:, :p.shape[1] // 2]),
    ("right_half", lambda p: p[:, p.shape[1] // 2:]),
])
def test_probe_folder_pixels_and_names(tmp_path: Path, probe: str, region) -> None:
    images = _queries(tmp_path / "foreground_query")
    stats = make_probe(_packed(tmp_path / "foreground_query"), tmp_path / f"probes/{probe}.zip",
                       probe, ext="png")
    assert stats == {"queries": 2, "written": 2, "skipped_empty": 0}
    items = load_person_set(tmp_path / f"probes/{probe}.zip")
    assert [(i.name, i.label, i.camera) for i in items] == [
        ("0001_c1s1_000151_00.png", 1, 1), ("0002_c2s1_000301_00.png", 2, 2)]
    for stem, pixels in images.items():
        out = open_pack(tmp_path / f"probes/{probe}.zip").read_rgb(f"{stem}.png")
        assert np.array_equal(out, region(pixels)), stem


def test_empty_region_is_skipped_and_counted(tmp_path: Path) -> None:
    write_png(tmp_path / "q/0003_c1_1.png", np.full((1, 4, 3), 9, np.uint8))
    write_png(tmp_path / "q/0004_c1_1.png", np.full((4, 4, 3), 9, np.uint8))
    stats = make_probe(_packed(tmp_path / "q"), tmp_path / "p.zip", "upper_half")
    assert stats == {"queries": 2, "written": 1, "skipped_empty": 1}
    assert open_pack(tmp_path / "p.zip").names() == ["0004_c1_1.jpg"]


def test_probe_deterministic_and_errors(tmp_path: Path) -> None:
    _queries(tmp_path / "q")
    make_probe(_packed(tmp_path / "q"), tmp_path / "a.zip", "torso", threads=2)
    make_probe(tmp_path / "q.zip", tmp_path / "b.zip", "torso", threads=1)
    assert (hashlib.sha256((tmp_path / "a.zip").read_bytes()).digest()
            == hashlib.sha256((tmp_path / "b.zip").read_bytes()).digest())
    (tmp_path / "q/0001_c1s1_000151_00.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(WorkflowInputError, match=r"q\.zip:0001_c1s1_000151_00\.png: corrupt"):
        make_probe(_packed(tmp_path / "q"), tmp_path / "c.zip", "torso")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "b.zip", "q", "q.zip"]
    with pytest.raises(WorkflowInputError, match="pack file not found"):
        make_probe(tmp_path / "missing.zip", tmp_path / "d.zip", "torso")

"""Anonymisation (third safeguard): each method against hand-computed pixels, and set copies
in which only the chosen person images change, byte-identical on reruns."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from overlearning.core.errors import ConfigError, WorkflowInputError
from overlearning.core.packs import open_pack, pack_of_files, write_pack
from overlearning.data.crop_sets import load_crop_set
from overlearning.safeguards.anonymise import (
    Anonymiser,
    anonymise_pixels,
    anonymise_set,
    noise_seed,
    variant_name,
)
from tests.conftest import REPO

PERSON = 26
BG = (0, 0, 0)


def _image(rows: list[list[tuple[int, int, int]]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


# --- methods on small images, expected values worked out by hand --------------------------


def test_mosaic_hand_computed_with_partial_edge_blocks_and_black_background() -> None:
    # 3 x 3 image, 2 x 2 blocks: one full block, two partial edge blocks, one 1 x 1 block;
    # (0, 2) and (2, 0) are masked background.
    image = _image([
        [(10, 1, 1), (20, 2, 2), BG],
        [(30, 3, 3), (41, 3, 4), (50, 5, 5)],
        [BG, (70, 7, 6), (80, 8, 9)],
    ])
    # Top-left block: R (10+20+30+41)/4 = 25.25 -> 25, G 9/4 = 2.25 -> 2,
    # B 10/4 = 2.5 -> 3 (halves round up). Partial blocks average only their foreground:
    # right column {50}, bottom row {70}; the background stays black.
    expected = _image([
        [(25, 2, 3), (25, 2, 3), BG],
        [(25, 2, 3), (25, 2, 3), (50, 5, 5)],
        [BG, (70, 7, 6), (80, 8, 9)],
    ])
    np.testing.assert_array_equal(anonymise_pixels(image, "mosaic", 2), expected)


def test_mosaic_background_level_keeps_dark_pixels_out_of_the_mean() -> None:
    image = _image([[(10, 1, 1), (20, 2, 2)], [(30, 3, 3), (41, 3, 4)]])
    # With level 10, (10, 1, 1) is background: kept, and the mean is over the other three:
    # R 91/3 = 30.33 -> 30, G 8/3 = 2.67 -> 3, B 9/3 = 3.
    expected = _image([[(10, 1, 1), (30, 3, 3)], [(30, 3, 3), (30, 3, 3)]])
    out = anonymise_pixels(image, "mosaic", 2, background_level=10)
    np.testing.assert_array_equal(out, expected)


def _naive_mosaic(image: np.ndarray, block: int) -> np.ndarray:
    out = image.copy()
    fg = image.max(axis=2) > 0
    for top in range(0, image.shape[0], block):
        for left in range(0, image.shape[1], block):
            tile = (slice(top, top + block), slice(left, left + block))
            mask = fg[tile]
            if mask.any():
                mean = image[tile][mask].astype(np.float64).mean(axis=0)
                out[tile][mask] = np.floor(mean + 0.5).astype(np.uint8)
    return out


def test_mosaic_matches_a_block_by_block_loop_on_a_masked_image() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 23, 3), dtype=np.uint8)
    image[rng.random((37, 23)) < 0.3] = 0
    for block in (1, 4, 24, 50):
        np.testing.assert_array_equal(anonymise_pixels(image, "mosaic", block),
                                      _naive_mosaic(image, block))


def test_blur_hand_computed_in_one_row_skips_the_background() -> None:
    # sigma 1: weights g(d) = exp(-d^2 / 2); the middle pixel is background and carries no
    # weight, so each end is (g(0) x_self + g(2) x_other) / (g(0) + g(2)).
    image = _image([[(100, 50, 10), BG, (200, 150, 30)]])
    g2 = math.exp(-2.0)
    assert (100 + g2 * 200) / (1 + g2) == pytest.approx(111.92, abs=0.01)
    expected = _image([[(112, 62, 12), BG, (188, 138, 28)]])
    np.testing.assert_array_equal(anonymise_pixels(image, "blur", 1), expected)


def test_blur_hand_computed_in_two_dimensions() -> None:
    # 2 x 2, sigma 1, all foreground: p00 = (10 + g1 20 + g1 30 + g1^2 40) / (1 + 2 g1 + g1^2)
    # with g1 = exp(-1/2): 55.04 / 2.581 = 21.33 -> 21; likewise 23.78, 26.23, 28.67.
    image = np.stack([np.array([[10, 20], [30, 40]])] * 3, axis=-1).astype(np.uint8)
    expected = np.stack([np.array([[21, 24], [26, 29]])] * 3, axis=-1)
    np.testing.assert_array_equal(anonymise_pixels(image, "blur", 1), expected)


def test_blur_strength_is_the_standard_deviation_as_in_pil() -> None:
    # PIL's GaussianBlur "radius" is a standard deviation (approximated by box blurs): away
    # from the border, on a fully foreground image, both agree within a few grey levels.
    rng = np.random.default_rng(1)
    image = rng.integers(1, 256, size=(64, 64, 3), dtype=np.uint8)
    for sigma in (2, 4):
        ours = anonymise_pixels(image, "blur", sigma).astype(int)
        pil = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma))).astype(int)
        inner = (slice(4 * sigma, -4 * sigma),) * 2
        diff = np.abs(ours - pil)[inner]
        assert diff.max() <= 3 and diff.mean() < 1.0
        assert np.abs(image.astype(int) - pil)[inner].mean() > 30  # the blur really blurs


def test_noise_seed_is_a_hash_of_the_config_seed_and_the_file_name() -> None:
    expected = int.from_bytes(hashlib.sha256(b"123:vid/00001_3.jpg").digest()[:8], "big")
    assert noise_seed(123, "vid/00001_3.jpg") == expected
    assert noise_seed(123, "vid/00001_4.jpg") != expected
    assert noise_seed(124, "vid/00001_3.jpg") != expected


def test_noise_hand_computed_from_the_seeded_draws() -> None:
    image = _image([[(100, 0, 255), BG], [(1, 2, 3), (128, 128, 128)]])
    seed = noise_seed(7, "a.jpg")
    draws = np.random.Generator(np.random.PCG64(seed)).standard_normal((2, 2, 3))
    out = Anonymiser("noise", 0.1, seed=7)(image, "a.jpg")
    for y in range(2):
        for x in range(2):
            for c in range(3):
                if (y, x) == (0, 1):
                    assert out[y, x, c] == 0  # background untouched
                    continue
                value = min(max(image[y, x, c] / 255 + 0.1 * draws[y, x, c], 0.0), 1.0)
                assert out[y, x, c] == math.floor(255 * value + 0.5), (y, x, c)


def test_strong_noise_clips_to_the_sign_of_the_draw() -> None:
    image = np.full((4, 4, 3), 128, dtype=np.uint8)
    seed = noise_seed(0, "x.png")
    draws = np.random.Generator(np.random.PCG64(seed)).standard_normal((4, 4, 3))
    out = Anonymiser("noise", 1000.0)(image, "x.png")
    np.testing.assert_array_equal(out, np.where(draws > 0, 255, 0))


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ConfigError, match="whole number"):
        Anonymiser("mosaic", 2.5)
    with pytest.raises(ConfigError, match="unknown"):
        Anonymiser("pixelate", 2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="> 0"):
        Anonymiser("blur", 0)
    assert [variant_name(m, s) for m, s in [("mosaic", 24), ("blur", 12.0), ("noise", 0.5)]] \
        == ["mosaic_24", "blur_12", "noise_0.5"]


# --- whole sets on disk -------------------------------------------------------------------

# name -> (category, detector verdict)
CROPS = {
    "vidA/00000_1.png": (PERSON, "Detected Person Exclusion"),
    "vidA/00000_2.png": (3, None),
    "vidA/00001_1.jpg": (PERSON, "Undetected Instance Exclusion"),
    "vidB/00000_5.jpg": (7, "Misclassified Instance Exclusion"),
    "vidB/00000_6.png": (PERSON, "Misclassified Instance Inclusion"),
}


def _masked_crop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    pixels = rng.integers(20, 256, size=(h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    pixels[((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 > 1] = 0
    return pixels


def _build_split(split: Path, exclusion_path: Path) -> dict[str, tuple[int, str | None]]:
    """A tiny VIS split on disk (CROPS) and its exclusion JSON."""
    rng = np.random.default_rng(3)
    images, annotations = [], []
    for i, (name, (category, _)) in enumerate(sorted(CROPS.items()), start=1):
        path = split / "foregroundImages_cropped" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_masked_crop(rng, 30 + i, 20 + 2 * i)).save(path)
        images.append({"id": i, "file_name": name, "width": 20 + 2 * i, "height": 30 + i})
        annotations.append({"id": i, "image_id": i, "category_id": category})
    index = {"images": images, "annotations": annotations, "categories": [], "videos": []}
    (split / "fg_instances_cropped.json").write_text(json.dumps(index))
    exclusion: dict[str, list[str]] = {}
    for name, (_, verdict) in CROPS.items():
        if verdict:
            exclusion.setdefault(verdict, []).append(name)
    exclusion_path.write_text(json.dumps(exclusion))
    _pack(split / "foregroundImages_cropped")
    return CROPS


def _pack(folder: Path) -> Path:
    """``<folder>.zip`` of the folder's files (what the datasets rules write), folder removed."""
    pack = folder.with_name(folder.name + ".zip")
    pack_of_files(pack, {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")
                         if p.is_file()})
    shutil.rmtree(folder)
    return pack


def _members(pack: Path) -> dict[str, bytes]:
    reader = open_pack(pack)
    return {name: reader.read_bytes(name) for name in reader.names()}


def _variant(out: Path, base: Path) -> dict[str, bytes]:
    """Every image of an anonymised variant: its delta laid over the base pack."""
    reader = open_pack(out / "changed.zip", base=base)
    return {name: reader.read_bytes(name) for name in reader.names()}


@pytest.fixture
def vis_split(tmp_path: Path) -> Path:
    split = tmp_path / "vis" / "test"
    _build_split(split, tmp_path / "exclusion.json")
    return split


CROPS_PACK = "foregroundImages_cropped.zip"


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


POLICIES = [Anonymiser("mosaic", 4, seed=1), Anonymiser("blur", 2.0, seed=1),
            Anonymiser("noise", 0.5, seed=1)]


@pytest.mark.parametrize("anonymiser", POLICIES, ids=lambda a: a.method)
def test_gt_policy_changes_only_person_crops(vis_split: Path, tmp_path: Path,
                                             anonymiser: Anonymiser) -> None:
    out = tmp_path / "anon" / "vis_test_gt"
    manifest = anonymise_set(images=vis_split / CROPS_PACK, out=out,
                             anonymiser=anonymiser, selection="gt_persons", split_dir=vis_split,
                             person_category=PERSON)
    persons = sorted(n for n, (c, _) in CROPS.items() if c == PERSON)
    assert manifest["anonymised"] == persons and manifest["images"] == len(CROPS)
    before, after = _members(vis_split / CROPS_PACK), _variant(out, vis_split / CROPS_PACK)
    assert sorted(before) == sorted(after)
    # The delta holds the changed images only.
    assert open_pack(out / "changed.zip").names() == persons
    for name in CROPS:
        if name in persons:
            assert before[name] != after[name], name
        else:
            assert before[name] == after[name], name
    # Lossless PNG person crops hold exactly the method's pixels.
    for name in (n for n in persons if n.endswith(".png")):
        raw = open_pack(vis_split / CROPS_PACK).read_rgb(name)
        got = open_pack(out / "changed.zip").read_rgb(name)
        np.testing.assert_array_equal(got, anonymiser(raw, name))
        np.testing.assert_array_equal(got[raw.max(axis=2) == 0], 0)  # background stays black
    # The variant indexes like the original split: the split's index over the overlay.
    overlay = open_pack(out / "changed.zip", base=vis_split / CROPS_PACK)
    assert [(i.name, i.read_bytes()) for i in load_crop_set(vis_split, PERSON, images=overlay)] \
        == sorted(after.items())
    assert json.loads((out / "anonymised.json").read_text()) == manifest
    assert all(not names for names in json.loads((out / "exclusion.json").read_text()).values())


def test_deployment_policy_follows_the_detector(vis_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "anon" / "vis_test_detected"
    manifest = anonymise_set(images=vis_split / CROPS_PACK, out=out,
                             anonymiser=POLICIES[0], selection="detected_persons",
                             split_dir=vis_split, exclusion=tmp_path / "exclusion.json")
    # Detected person and the non-person called a person are anonymised; the missed person
    # is not indexed (left raw in the copy); the person called something else leaks raw.
    assert manifest["anonymised"] == ["vidA/00000_1.png", "vidB/00000_5.jpg"]
    assert manifest["not_indexed"] == ["vidA/00001_1.jpg"]
    before, after = _members(vis_split / CROPS_PACK), _variant(out, vis_split / CROPS_PACK)
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == manifest["anonymised"]
    exclusion = json.loads((out / "exclusion.json").read_text())
    assert exclusion["Undetected Instance Exclusion"] == ["vidA/00001_1.jpg"]
    assert all(not exclusion[c] for c in exclusion if c != "Undetected Instance Exclusion")


def test_gallery_policy_anonymises_every_image_and_keeps_other_members(tmp_path: Path) -> None:
    gallery = tmp_path / "market1501" / "foregroundImages_cropped"
    gallery.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for name in ("0001_c1s1_000151_01.jpg", "0002_c2s1_000301_01.jpg"):
        Image.fromarray(_masked_crop(rng, 32, 16)).save(gallery / name)
    (gallery / "Thumbs.db").write_bytes(b"not an image")
    gallery = _pack(gallery)
    out = tmp_path / "anon" / "market1501"
    manifest = anonymise_set(images=gallery, out=out, anonymiser=POLICIES[1], selection="gt_persons")
    assert manifest["anonymised"] == ["0001_c1s1_000151_01.jpg", "0002_c2s1_000301_01.jpg"]
    variant, before = _variant(out, gallery), _members(gallery)
    assert variant["Thumbs.db"] == b"not an image"  # not an image: read from the base
    assert manifest["images"] == 2
    assert open_pack(out / "changed.zip").names() == manifest["anonymised"]
    for name in manifest["anonymised"]:
        assert variant[name] != before[name]


def test_reruns_are_byte_identical(vis_split: Path, tmp_path: Path) -> None:
    trees = []
    for run in ("a", "b"):
        out = tmp_path / run / "vis_test_detected"
        anonymise_set(images=vis_split / CROPS_PACK, out=out,
                      anonymiser=POLICIES[2], selection="detected_persons", split_dir=vis_split,
                      exclusion=tmp_path / "exclusion.json")
        trees.append(_files(out))
    assert sorted(trees[0]) == ["anonymised.json", "changed.zip", "exclusion.json"]
    assert trees[0] == trees[1]


def _assert_nothing_written(parent: Path) -> None:
    assert not parent.exists() or not any(p.is_file() for p in parent.rglob("*"))


def test_corrupt_person_image_stops_and_leaves_no_output(vis_split: Path, tmp_path: Path) -> None:
    members = _members(vis_split / CROPS_PACK)
    members["vidA/00001_1.jpg"] = b"\xff\xd8 broken"
    with write_pack(vis_split / CROPS_PACK) as pack:
        for name, data in members.items():
            pack.add(name, data)
    out = tmp_path / "anon" / "vis_test_gt"
    with pytest.raises(WorkflowInputError, match="00001_1.jpg"):
        anonymise_set(images=vis_split / CROPS_PACK, out=out,
                      anonymiser=POLICIES[0], selection="gt_persons", split_dir=vis_split,
                      person_category=PERSON)
    _assert_nothing_written(out.parent)


@pytest.mark.parametrize("exclusion, message", [
    ({"Detected Person Exclusion": ["vidZ/00000_9.png"]}, "not crops of the set"),
    ({"Person Exclusion": []}, "unknown exclusion categories"),
    (["vidA/00000_1.png"], "must be an object"),
])
def test_bad_exclusion_json_stops(vis_split: Path, tmp_path: Path, exclusion: object,
                                  message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(exclusion))
    with pytest.raises(WorkflowInputError, match=message):
        anonymise_set(images=vis_split / CROPS_PACK, out=tmp_path / "o" / "x",
                      anonymiser=POLICIES[0], selection="detected_persons",
                      split_dir=vis_split, exclusion=path)
    _assert_nothing_written(tmp_path / "o")


def test_missing_person_image_stops(vis_split: Path, tmp_path: Path) -> None:
    members = _members(vis_split / CROPS_PACK)
    del members["vidA/00000_1.png"]
    with write_pack(vis_split / "other.zip") as pack:
        for name, data in members.items():
            pack.add(name, data)
    with pytest.raises(WorkflowInputError, match="missing"):
        anonymise_set(images=vis_split / "other.zip", out=tmp_path / "o" / "x",
                      anonymiser=POLICIES[0], selection="gt_persons", split_dir=vis_split,
                      person_category=PERSON)


def test_script_writes_the_set(vis_split: Path, tmp_path: Path) -> None:
    out = tmp_path / "anon" / "blur_2" / "vis_test_gt"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "anonymise.py"), "--selection", "gt_persons",
         "--images", str(vis_split / CROPS_PACK), "--split-dir", str(vis_split),
         "--person-category", str(PERSON), "--method", "blur", "--strength", "2",
         "--seed", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    direct = tmp_path / "direct"
    anonymise_set(images=vis_split / CROPS_PACK, out=direct,
                  anonymiser=POLICIES[1], selection="gt_persons", split_dir=vis_split,
                  person_category=PERSON)
    assert _files(out) == _files(direct)


def test_deployment_policy_on_a_person_gallery(tmp_path: Path) -> None:
    gallery = tmp_path / "cuhk03" / "foregroundImages_cropped"
    gallery.mkdir(parents=True)
    rng = np.random.default_rng(6)
    names = ["0001_c1_1.jpg", "0001_c2_1.jpg", "0002_c1_1.jpg"]
    for name in names:
        Image.fromarray(_masked_crop(rng, 32, 16)).save(gallery / name)
    gallery = _pack(gallery)
    exclusion = tmp_path / "exclusion.json"
    exclusion.write_text(json.dumps({"Detected Person Exclusion": [names[0]],
                                     "Misclassified Instance Inclusion": [names[1]],
                                     "Undetected Instance Exclusion": [names[2]]}))
    out = tmp_path / "anon" / "cuhk03_detected"
    manifest = anonymise_set(images=gallery, out=out, anonymiser=POLICIES[0],
                             selection="detected_persons", exclusion=exclusion)
    assert manifest["anonymised"] == [names[0]] and manifest["not_indexed"] == [names[2]]
    after, before = _variant(out, gallery), _members(gallery)
    assert after[names[0]] != before[names[0]]
    assert after[names[1]] == before[names[1]]  # the leak stays raw
    assert after[names[2]] == before[names[2]]


# --- raw queries against an anonymised index ----------------------------------------------


def _embedding_set(tmp_path: Path, name: str, embeddings: np.ndarray):
    from overlearning.evaluate.embeddings import EmbeddingSet, save_embedding_set

    files = np.array([f"v{i // 3}/0000{i}_{i // 3 + 1}.jpg" for i in range(len(embeddings))])
    data = EmbeddingSet(embeddings.astype(np.float32), np.array([i // 3 + 1 for i in range(len(embeddings))]),
                        files, np.array([i % 2 == 0 for i in range(len(embeddings))]),
                        np.full(len(embeddings), -1))
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_embedding_set(path, data)
    return path


def test_an_unchanged_copy_gives_exactly_the_raw_metrics(tmp_path: Path) -> None:
    # Raw queries against a copy whose vectors equal the raw ones: with each query's copy
    # taken as the query itself, every number equals the raw evaluation (query set = index).
    from overlearning.evaluate.anonymised import write_anonymised_metrics
    from overlearning.evaluate.metrics_file import write_metrics
    from overlearning.evaluate.retrieval_inputs import Part

    embeddings = np.random.default_rng(0).normal(size=(9, 8))
    raw = _embedding_set(tmp_path, "raw/vis_test.npz", embeddings)
    copy = _embedding_set(tmp_path, "anon/vis_test.npz", embeddings)
    meta = {"setting": "ms", "evaluation": "person", "exclusion": "x"}
    expected = write_metrics(tmp_path / "raw.json", Part(raw, "persons"), [Part(raw, "all")],
                             False, meta)
    got = write_anonymised_metrics(tmp_path / "anon.json", Part(raw, "persons"),
                                   [Part(copy, "all")], [copy], False, meta)
    assert got == expected
    # Without the copy taken as the query, each query finds its own twin first.
    inflated = write_metrics(tmp_path / "naive.json", Part(raw, "persons"), [Part(copy, "all")],
                             False, meta)
    assert inflated["retrieval"] != expected["retrieval"]


def test_query_copies_are_found_by_name_only_in_the_copy_part(tmp_path: Path) -> None:
    # References: a 6-item distractor part whose names collide with the queries', then the
    # 9-item copy. Person queries are items 0, 2, 4, 6, 8; their copies sit at 6 + i.
    from overlearning.evaluate.anonymised import mark_query_copies
    from overlearning.evaluate.retrieval_inputs import Part, load_retrieval_inputs

    rng = np.random.default_rng(2)
    raw = _embedding_set(tmp_path, "raw/vis_test.npz", rng.normal(size=(9, 4)))
    other = _embedding_set(tmp_path, "ovis/ovis_test.npz", rng.normal(size=(6, 4)))
    copy = _embedding_set(tmp_path, "anon/vis_test.npz", rng.normal(size=(9, 4)))
    inputs = load_retrieval_inputs(Part(raw, "persons"), [Part(other, "all"), Part(copy, "all")])
    assert (inputs.self_index == -1).all()
    marked = mark_query_copies(inputs, [1])
    np.testing.assert_array_equal(marked.self_index, [6, 8, 10, 12, 14])


def test_a_query_without_its_copy_stops(tmp_path: Path) -> None:
    from overlearning.evaluate.anonymised import write_anonymised_metrics
    from overlearning.evaluate.retrieval_inputs import Part

    raw = _embedding_set(tmp_path, "raw/vis_test.npz", np.eye(6))
    copy = _embedding_set(tmp_path, "anon/vis_test.npz", np.eye(6)[:3])
    with pytest.raises(WorkflowInputError, match="no copy"):
        write_anonymised_metrics(tmp_path / "m.json", Part(raw, "persons"), [Part(copy, "all")],
                                 [copy], False, {"setting": "s", "evaluation": "e", "exclusion": "x"})
    assert not (tmp_path / "m.json").exists()


# --- the rules, through Snakemake -----------------------------------------------------------


def test_rules_write_every_policy_and_change_only_the_chosen_images(tmp_path: Path) -> None:
    # Real Snakemake on the demo config, the upstream stages replaced by files on disk
    # (--allowed-rules): the anonymisation rules alone run, on the VIS split and a gallery.
    from tests.conftest import run_snakemake

    root = tmp_path / "demo-run"
    split = root / "data" / "vis" / "test"
    split.parent.mkdir(parents=True)
    built = _build_split(split, tmp_path / "results-exclusion.json")
    (root / "results" / "exclusion").mkdir(parents=True)
    (tmp_path / "results-exclusion.json").rename(root / "results" / "exclusion" / "vis_test.json")
    gallery = root / "data" / "market1501" / "foregroundImages_cropped"
    gallery.mkdir(parents=True)
    rng = np.random.default_rng(8)
    people = ["0001_c1s1_000001_01.jpg", "0002_c2s1_000002_01.jpg"]
    for name in people:
        Image.fromarray(_masked_crop(rng, 32, 16)).save(gallery / name)
    gallery = _pack(gallery)
    (root / "results" / "exclusion" / "market1501.json").write_text(
        json.dumps({"Detected Person Exclusion": people[:1],
                    "Misclassified Instance Inclusion": people[1:]}))
    anon = root / "data" / "anon" / "mosaic_24"
    sets = ["vis_test_gt", "vis_test_detected", "market1501_gt", "market1501_detected"]
    run_snakemake(["--configfile", str(REPO / "config.demo.yaml"), "--cores", "1",
                   "--allowed-rules", "anonymise_vis_test", "anonymise_person_gallery",
                   "--", *[f"demo-run/data/anon/mosaic_24/{s}/changed.zip" for s in sets]],
                  cwd=tmp_path)

    def changed(out: Path, source: Path) -> list[str]:
        after = _variant(out, source)
        before = _members(source)
        assert sorted(after) == sorted(before)
        return sorted(n for n in before if before[n] != after[n])

    vis = split / CROPS_PACK
    assert changed(anon / "vis_test_gt", vis) == sorted(n for n, (c, _) in built.items() if c == PERSON)
    assert changed(anon / "vis_test_detected", vis) == ["vidA/00000_1.png", "vidB/00000_5.jpg"]
    assert changed(anon / "market1501_gt", gallery) == people
    assert changed(anon / "market1501_detected", gallery) == people[:1]

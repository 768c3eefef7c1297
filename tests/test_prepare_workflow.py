"""The dataset rules through the real Snakemake CLI on hand-made raw datasets, twice.

Datasets are given as already-extracted directories (config ``datasets.*.directory``), so
this exercises rules/datasets.smk alone: every output of dataset_targets(), one log per
rule, and byte-identical outputs from two runs in two working directories.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from overlearning.core.packs import open_pack
from overlearning.data.crop_sets import load_crop_set, load_person_set
from tests.conftest import REPO, run_snakemake
from tests.test_prepare_fixtures import build_cuhk03, build_market, build_ovis, build_vis

pytestmark = pytest.mark.slow

DATA = "demo-run/data"
PERSON_ROOTS = ("cuhk03/labeled", "cuhk03/detected", "market1501")
PROBES = ("torso", "upper_half", "lower_half", "left_half", "right_half")


def _targets() -> list[str]:
    crop_files = ("instances.json", "foregroundImages_cropped.zip", "fg_instances_cropped.json",
                  "fg_instances.json")
    targets = [f"{DATA}/vis/{s}/{n}" for s in ("train", "valid", "test") for n in crop_files]
    targets += [f"{DATA}/ovis/test/{n}" for n in crop_files]
    for root in PERSON_ROOTS:
        targets += [f"{DATA}/{root}/foreground_query.zip",
                    f"{DATA}/{root}/foregroundImages_cropped.zip"]
        targets += [f"{DATA}/{root}/probes/{p}.zip" for p in PROBES]
    return targets


def _config(tmp: Path) -> Path:
    raw = tmp / "raw"
    build_vis(raw / "vis", n_videos=10, empty_videos=(3,))
    build_ovis(raw / "ovis")
    build_cuhk03(raw / "cuhk03")
    build_market(raw / "market")
    datasets = {
        "youtube_vis": {"directory": str(raw / "vis"), "images": "JPEGImages",
                        "annotations": "instances.json"},
        "ovis": {"directory": str(raw / "ovis"), "images": "train",
                 "annotations": "annotations_train.json"},
        "cuhk03": {"directory": str(raw / "cuhk03"), "images": ".", "masks": "."},
        "market1501": {"directory": str(raw / "market"), "images": ".", "masks": "."},
    }
    for source in datasets.values():
        source["archives"] = []
    path = tmp / "fixtures.yaml"
    path.write_text(yaml.safe_dump({"demo": {"generate": False}, "datasets": datasets}))
    return path


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    config = _config(tmp_path_factory.mktemp("raw"))
    args = ["--configfile", str(REPO / "config.demo.yaml"), str(config), "--cores", "2",
            *_targets()]
    dirs = (tmp_path_factory.mktemp("run-a"), tmp_path_factory.mktemp("run-b"))
    for cwd in dirs:
        run_snakemake(args, cwd=cwd, timeout=600)
    return dirs


def test_every_target_and_one_log_per_rule(runs: tuple[Path, Path]) -> None:
    root = runs[0]
    for target in _targets():
        assert (root / target).exists(), target
    logs = root / "demo-run/logs"
    for rule, pattern in [("vis_frames", "all"), ("vis_split", "all"), ("vis_crops", "test"),
                          ("ovis_frames", "all"), ("ovis_crops", "all"),
                          ("person_set", "market1501"), ("person_probes", "cuhk03/labeled/torso")]:
        assert (logs / rule / f"{pattern}.log").is_file(), rule
    assert "zero-size skipped" in (logs / "vis_crops/train.log").read_text()
    assert "1 junk (-1, drop)" in (logs / "person_set/market1501.log").read_text()


def test_outputs_satisfy_the_readers(runs: tuple[Path, Path]) -> None:
    data = runs[0] / DATA
    objects = json.loads((data / "vis/objects.json").read_text())["object_count"]
    assert objects == 14  # 10 cats (one per video) - the empty video + 5 persons
    train = load_crop_set(data / "vis/train", person_category=26)
    test = load_crop_set(data / "vis/test", person_category=26)
    assert train and test and not {i.label for i in train} & {i.label for i in test}
    ovis = load_crop_set(data / "ovis/test", person_category=1)
    assert min(i.label for i in ovis) == objects + 1
    for root in PERSON_ROOTS:
        query = load_person_set(data / root / "foreground_query.zip")
        for probe in PROBES:
            assert [i.name for i in load_person_set(data / root / "probes" / f"{probe}.zip")] == \
                [i.name for i in query]
    gallery = [i.label for i in load_person_set(data / "market1501/foregroundImages_cropped.zip")]
    assert -1 not in gallery and 0 in gallery


def test_second_run_is_byte_identical(runs: tuple[Path, Path]) -> None:
    first, second = (_digests(r / DATA) for r in runs)
    # One pack per image set: 25 packs beside 14 JSON files, well over 60 images inside.
    packs = [name for name in first if name.endswith(".zip")]
    assert len(packs) == 25 and len(first) == 39
    assert sum(len(open_pack(runs[0] / DATA / name).names()) for name in packs) > 60
    assert first == second

"""The scale rehearsal's generated downloads: the published counts and the official layouts.

One generation at 1/64 of the published counts (about 15 s) is shared by the module. The
counts are checked against the published numbers written out here (not taken from the
generator), each scaled by the fraction; the layout by the workflow's own readers: the
archives extract safely, the video files convert to frame-level JSON with a frame file
behind every name and crop, and the person sets pass the official name patterns and mask
with their MGCAM masks. The per-video distributions are checked at the full published
count (drawing the plan only, nothing rendered).
"""

from __future__ import annotations

import math
import re
import zipfile
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from overlearning.core.atomic import read_json
from overlearning.core.packs import open_pack
from overlearning.data.archives import ArchiveSource, extract_archives
from overlearning.data.crops import make_crops
from overlearning.data.person_sets import prepare_person_set
from overlearning.data.vis_frames import convert_video_annotations
from overlearning.demo.downloads import DEMO_FILES
from overlearning.demo.scale import STREAMS, video_shape, write_scale_downloads
from scripts.make_scale_downloads import main as make_main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FRACTION = Fraction(1, 64)
# Published counts (youtube-vos.org, songbai.site/ovis, the Market-1501 and CUHK03-NP
# (Zhong et al. 2017) releases), independent of the generator's table.
YTVIS_VIDEOS, OVIS_VIDEOS = 2985, 607
MARKET = {"bounding_box_train": 12936, "query": 3368, "good": 19732 - 3819 - 2793,
          "junk": 3819, "distractors": 2793}
CUHK03 = {"labeled": {"bounding_box_train": 7368, "query": 1400, "bounding_box_test": 5328},
          "detected": {"bounding_box_train": 7365, "query": 1400, "bounding_box_test": 5332}}


def at(count: int) -> int:
    """The published count at FRACTION, rounded half up."""
    return math.floor(count * FRACTION + Fraction(1, 2))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale-downloads")
    assert make_main(["--out", str(root), "--fraction", "1/64", "--threads", "2"]) == 0
    return root


@pytest.fixture(scope="module")
def raw(out: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every dataset extracted by the workflow's extraction, as the extract rule does."""
    root = tmp_path_factory.mktemp("scale-raw")
    groups = {"youtube_vis": ["youtube_vis_2021/train.zip"],
              "ovis": ["ovis/train.zip", "ovis/annotations_train.json"],
              "cuhk03": ["cuhk03/cuhk03-np.zip", "cuhk03/cuhk03-np-mgcam-masks.zip"],
              "market1501": ["market1501/Market-1501-v15.09.15.zip",
                             "market1501/Market-1501-mgcam-masks.zip"]}
    for dataset, files in groups.items():
        extract_archives([ArchiveSource(out / f) for f in files], root / dataset)
    return root


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_writes_the_official_download_names(out: Path) -> None:
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(DEMO_FILES)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_video_counts(raw: Path) -> None:
    ytvis = read_json(raw / "youtube_vis" / "train" / "instances.json")
    ovis = read_json(raw / "ovis" / "annotations_train.json")
    assert len(ytvis["videos"]) == at(YTVIS_VIDEOS)
    assert len(ovis["videos"]) == at(OVIS_VIDEOS)
    for data, published_masks in ((ytvis, 180_000), (ovis, 200_000)):
        masks = sum(s is not None for a in data["annotations"] for s in a["segmentations"])
        # A few dozen videos: the mask count follows the published one within sampling noise.
        assert 0.6 * published_masks * FRACTION < masks < 1.4 * published_masks * FRACTION
        for video in data["videos"]:
            assert video["length"] == len(video["file_names"])


def test_per_video_distributions_at_the_published_counts() -> None:
    """Frames and instances per video, drawn for every video of the full sets."""
    expected = {"youtube_vis": (YTVIS_VIDEOS, 90_000, 6_283, 36),
                "ovis": (OVIS_VIDEOS, 42_000, 3_579, 300)}
    for dataset, (videos, frames, instances, longest) in expected.items():
        shapes = np.array([video_shape(dataset, np.random.default_rng([123, STREAMS[dataset],
                                                                       1, i]))
                           for i in range(videos)])
        assert abs(shapes[:, 0].sum() / frames - 1) < 0.05, dataset
        assert abs(shapes[:, 1].sum() / instances - 1) < 0.05, dataset
        assert shapes[:, 0].max() <= longest and shapes[:, 1].min() >= 1
        assert len(set(shapes[:, 0].tolist())) > 10, "frame counts vary like the real clips"


def test_person_counts(raw: Path) -> None:
    market = raw / "market1501" / "Market-1501-v15.09.15"
    groups = Counter(name.split("_")[0] if name.split("_")[0] in ("-1", "0000") else "good"
                     for name in files_in(market / "bounding_box_test"))
    assert len(files_in(market / "bounding_box_train")) == at(MARKET["bounding_box_train"])
    assert len(files_in(market / "query")) == at(MARKET["query"])
    assert groups == {"good": at(MARKET["good"]), "-1": at(MARKET["junk"]),
                      "0000": at(MARKET["distractors"])}
    for kind, counts in CUHK03.items():
        root = raw / "cuhk03" / "cuhk03-np" / kind
        for folder, count in counts.items():
            expected = 2 * at(700) if folder == "query" else at(count)  # one per camera
            assert len(files_in(root / folder)) == expected, (kind, folder)
            assert files_in(root / f"{folder}_seg") == files_in(root / folder)


def test_identities_follow_the_protocol(raw: Path) -> None:
    market = raw / "market1501" / "Market-1501-v15.09.15"
    ids = {f: {n.split("_")[0] for n in files_in(market / f)}
           for f in ("bounding_box_train", "query", "bounding_box_test")}
    assert len(ids["bounding_box_train"]) == at(751)
    assert len(ids["query"]) == at(750)
    assert not ids["bounding_box_train"] & ids["query"]
    assert ids["query"] <= ids["bounding_box_test"]
    # At most one query image per identity and camera, a gallery match under another camera.
    pairs = Counter(re.match(r"(\d{4})_c(\d)", n).groups() for n in files_in(market / "query"))
    assert max(pairs.values()) == 1
    gallery_cams: dict[str, set[str]] = {}
    for name in files_in(market / "bounding_box_test"):
        pid, cam = name.split("_")[0], name.split("_c")[1][0]
        gallery_cams.setdefault(pid, set()).add(cam)
    for pid, cam in pairs:
        assert gallery_cams[pid] - {cam}, (pid, cam)


def test_video_files_read_with_the_workflow_readers(raw: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames.json"
    counts = convert_video_annotations(raw / "youtube_vis" / "train" / "instances.json", frames,
                                       person_category=26)
    assert counts
    written = make_crops(frames, raw / "youtube_vis" / "train" / "JPEGImages", tmp_path / "vis")
    index = read_json(tmp_path / "vis" / "fg_instances_cropped.json")
    assert written["crops"] == len(index["images"]) > 0
    ovis_frames = tmp_path / "ovis.json"
    convert_video_annotations(raw / "ovis" / "annotations_train.json", ovis_frames,
                              person_category=1)
    for image in read_json(ovis_frames)["images"]:
        assert (raw / "ovis" / "train" / image["file_name"]).is_file()


def test_person_sets_read_with_the_workflow_readers(raw: Path, tmp_path: Path) -> None:
    market = raw / "market1501" / "Market-1501-v15.09.15"
    prepare_person_set(market, market, tmp_path / "market", naming="market1501")
    gallery = open_pack(tmp_path / "market" / "foregroundImages_cropped.zip").names()
    # The paper config drops the junk and keeps the distractors.
    assert len(gallery) == at(MARKET["good"]) + at(MARKET["distractors"])
    for kind in CUHK03:
        root = raw / "cuhk03" / "cuhk03-np" / kind
        prepare_person_set(root, root, tmp_path / kind, naming="cuhk03")
        assert len(open_pack(tmp_path / kind / "foreground_query.zip").names()) == 2 * at(700)


def test_same_bytes_for_the_same_seed_and_fraction(tmp_path: Path) -> None:
    first = write_scale_downloads(tmp_path / "a", "1/128", 7, datasets=["ovis", "cuhk03"])
    second = write_scale_downloads(tmp_path / "b", "1/128", 7, workers=2,
                                   datasets=["ovis", "cuhk03"])
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    with zipfile.ZipFile(first[0]) as zf:
        assert zf.testzip() is None

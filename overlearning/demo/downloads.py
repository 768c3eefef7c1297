"""The demo's stand-ins for the four official downloads, written as the real files look.

``write_demo_downloads`` makes, below one folder, exactly the archives a user would have
downloaded (see ``DEMO_FILES``), so the demo runs the real checksum, extraction and parsing
code on them. The content comes from ``demo_vis`` (YouTube-VIS 2021, OVIS) and
``demo_persons`` (CUHK03-NP, Market-1501, MGCAM masks). Output is byte-identical for the
same sizes and seed: every dataset draws from its own seeded stream, zip entries are
sorted and carry a fixed timestamp and fixed permissions.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overlearning.core.atomic import write_bytes
from overlearning.core.errors import WorkflowInputError
from overlearning.data.vis_split import cut_points, shuffled_video_order
from overlearning.demo import persons as demo_persons
from overlearning.demo import vis as demo_vis

YOUTUBE_VIS_ZIP = "youtube_vis_2021/train.zip"
OVIS_ZIP = "ovis/train.zip"
OVIS_JSON = "ovis/annotations_train.json"
CUHK03_ZIP = "cuhk03/cuhk03-np.zip"
CUHK03_MASKS_ZIP = "cuhk03/cuhk03-np-mgcam-masks.zip"
MARKET_ZIP = "market1501/Market-1501-v15.09.15.zip"
MARKET_MASKS_ZIP = "market1501/Market-1501-mgcam-masks.zip"
DEMO_FILES = (YOUTUBE_VIS_ZIP, OVIS_ZIP, OVIS_JSON, CUHK03_ZIP, CUHK03_MASKS_ZIP, MARKET_ZIP,
              MARKET_MASKS_ZIP)
ZIP_TIME = (2021, 1, 1, 0, 0, 0)
# One random stream per dataset: changing one dataset's size leaves the others unchanged.
STREAMS = {"youtube_vis": 1, "ovis": 2, "cuhk03": 3, "market1501": 4}


@dataclass(frozen=True)
class DemoSizes:
    """The ``demo:`` keys of the configuration."""

    vis_videos: int = 24
    vis_frames: int = 6
    ovis_videos: int = 6
    ovis_frames: int = 5
    persons: int = 12
    cameras: int = 2
    images_per_camera: int = 3
    image_size: tuple[int, int] = (96, 128)  # height, width of video frames


def json_bytes(obj: object) -> bytes:
    # Compact like the official files; key order is the construction order, which is fixed.
    return json.dumps(obj, separators=(",", ":")).encode()


def _directories(names: Iterable[str]) -> set[str]:
    out = set()
    for name in names:
        parts = name.split("/")[:-1]
        out.update("/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1))
    return out


def write_zip(path: Path, entries: Mapping[str, bytes]) -> None:
    """A zip whose bytes depend on ``entries`` only: sorted, fixed time and modes.

    Folder entries are included, as the official archives have them. Written to a
    temporary name and renamed, so an interrupted run leaves no partial archive.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name in sorted(set(entries) | _directories(entries)):
                info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
                info.create_system = 3
                if name.endswith("/"):
                    info.external_attr = (0o40755 << 16) | 0x10
                    zf.writestr(info, b"")
                else:
                    info.external_attr = 0o100644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    zf.writestr(info, entries[name], compresslevel=6)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _rng(seed: int, dataset: str) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[dataset]])


def check_expected(out_dir: Path, expected: Sequence[Path | str]) -> None:
    """Every path the workflow expects must be one this generator writes."""
    made = {os.path.normpath(out_dir / name) for name in DEMO_FILES}
    for path in expected:
        if os.path.normpath(path) not in made:
            raise WorkflowInputError(
                path, "the demo generator does not make this file; under demo.out it writes "
                      + ", ".join(DEMO_FILES) + " (datasets.*.archives must name these)")


def held_out_videos(videos: int, cuts: Sequence[float], split_seed: int) -> list[int]:
    """Positions of the videos the study's split puts into valid and test."""
    order = shuffled_video_order(list(range(videos)), split_seed)
    first, _ = cut_points(videos, cuts)
    return sorted(order[first:])


def write_demo_downloads(out_dir: Path | str, sizes: DemoSizes, seed: int,
                         expected: Sequence[Path | str] = (),
                         split_cuts: Sequence[float] = (0.8, 0.9),
                         split_seed: int = 123) -> list[Path]:
    """Write every file of ``DEMO_FILES`` below ``out_dir``; return their paths.

    The valid and test videos of the configured split always show a person, so the
    demo's person validation and person-query evaluations are never empty.
    """
    out_dir = Path(out_dir)
    check_expected(out_dir, expected)
    frame_hw = (int(sizes.image_size[0]), int(sizes.image_size[1]))

    files, instances = demo_vis.youtube_vis(
        _rng(seed, "youtube_vis"), sizes.vis_videos, sizes.vis_frames, frame_hw,
        with_person=held_out_videos(sizes.vis_videos, split_cuts, split_seed))
    files["train/instances.json"] = json_bytes(instances)
    write_zip(out_dir / YOUTUBE_VIS_ZIP, files)

    files, annotations = demo_vis.ovis(_rng(seed, "ovis"), sizes.ovis_videos, sizes.ovis_frames,
                                       frame_hw)
    write_zip(out_dir / OVIS_ZIP, files)
    write_bytes(out_dir / OVIS_JSON, json_bytes(annotations))

    person_args = (sizes.persons, sizes.cameras, sizes.images_per_camera)
    images, masks = demo_persons.cuhk03(_rng(seed, "cuhk03"), *person_args)
    write_zip(out_dir / CUHK03_ZIP, images)
    write_zip(out_dir / CUHK03_MASKS_ZIP, masks)

    images, masks = demo_persons.market1501(_rng(seed, "market1501"), *person_args)
    write_zip(out_dir / MARKET_ZIP, images)
    write_zip(out_dir / MARKET_MASKS_ZIP, masks)
    return [out_dir / name for name in DEMO_FILES]

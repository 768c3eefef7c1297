"""Generated downloads at the published counts (or a fraction of them) for the scale rehearsal.

The demo's downloads (``downloads.py``) are a handful of clips and people; this module writes
the same seven files in the same official layouts, but with the published numbers of videos,
frames, instances, identities and images, at small pixel sizes: the counts and the folder
structure are real, the pixels are not. The scale rehearsal (``make scale``,
config.scale.yaml) runs the whole workflow on it to measure every rule at the paper's data
volume.

Published counts (``PUBLISHED``; sources in docs/datasets.md and below):

- YouTube-VIS 2021 train: 2,985 videos (youtube-vos.org/dataset/vis: 3,859 videos, 2,985
  train, 8,171 instances and 232k masks over all splits). Train holds about 6,300 instances
  (2.1 per video) and about 180k masks; clips are annotated every 5 frames, up to 36
  annotated frames (about 30 on average).
- OVIS train: 607 of its 901 videos (songbai.site/ovis: 5.80 instances per video, 4.72
  objects per frame, 296k masks, long clips: 12.77 s on average, annotated every 5
  frames), so about 42k frames and 200k masks in train.
- Market-1501: 751 training identities with 12,936 images; 750 test identities with 3,368
  query images (at most one per camera) and a gallery of 19,732 images, of which 2,793 are
  distractors (``0000``) and 3,819 junk (``-1``); 6 cameras.
- CUHK03-NP (the new protocol of Zhong et al.): 767 training and 700 test identities, 2
  cameras, one query image per test identity and camera; labeled 7,368 train / 1,400
  query / 5,328 gallery, detected 7,365 / 1,400 / 5,332.

``fraction`` scales the number of videos and identities and every image count (rounded);
frames, instances and masks per video follow the distributions above whatever the fraction.
Each video and each identity draws from its own seeded stream, so the output is
byte-identical for the same seed and fraction, and rendering runs in worker processes.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from overlearning.core.atomic import write_bytes
from overlearning.core.names import MASK_FOLDER_SUFFIX
from overlearning.demo import persons as demo_persons
from overlearning.demo import vis as demo_vis
from overlearning.demo.downloads import (
    CUHK03_MASKS_ZIP,
    CUHK03_ZIP,
    DEMO_FILES,
    MARKET_MASKS_ZIP,
    MARKET_ZIP,
    OVIS_JSON,
    OVIS_ZIP,
    YOUTUBE_VIS_ZIP,
    ZIP_TIME,
    json_bytes,
)

PUBLISHED: dict[str, dict[str, int]] = {
    "youtube_vis": {"videos": 2985, "instances": 6283, "masks": 180000, "max_frames": 36},
    "ovis": {"videos": 607, "instances": 3579, "masks": 200000},
    "market1501": {"train_ids": 751, "test_ids": 750, "train": 12936, "query": 3368,
                   "gallery": 19732, "distractors": 2793, "junk": 3819, "cameras": 6},
    "cuhk03_labeled": {"train_ids": 767, "test_ids": 700, "train": 7368, "query": 1400,
                       "gallery": 5328},
    "cuhk03_detected": {"train_ids": 767, "test_ids": 700, "train": 7365, "query": 1400,
                        "gallery": 5332},
}
STREAMS = {"youtube_vis": 11, "ovis": 12, "cuhk03": 13, "market1501": 14}
FRAME_HW = (48, 64)          # height, width of generated video frames
MARKET_HW = (64, 32)         # Market-1501 images are 128 x 64; half that here
CUHK03_HEIGHTS = (52, 69)    # CUHK03 boxes vary in size; about half the real ones
CUHK03_WIDTHS = (20, 29)
YTVIS_PERSON_SHARE = 0.25    # share of YouTube-VIS instances that are people (its largest class)
OVIS_PERSON_SHARE = 0.3


def parse_fraction(text: str | float | Fraction) -> Fraction:
    """``1/16``, ``0.25`` or ``1`` as a fraction in (0, 1]."""
    value = Fraction(str(text)).limit_denominator(1 << 16)
    if not 0 < value <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {text}")
    return value


def scaled(count: int, fraction: Fraction, least: int = 1) -> int:
    """``count x fraction``, rounded half up, at least ``least``."""
    return max(least, int(count * fraction + Fraction(1, 2)))


def spread(total: int, parts: int, rng: np.random.Generator, low: int = 0,
           high: int | None = None) -> list[int]:
    """``parts`` whole numbers in [low, high] summing to ``total``, as even as possible, with
    the remainder given to randomly chosen parts."""
    if parts <= 0:
        return []
    if total < low * parts or (high is not None and total > high * parts):
        raise ValueError(f"cannot split {total} into {parts} parts of {low}..{high}")
    base, extra = divmod(total, parts)
    out = np.full(parts, base, dtype=np.int64)
    out[rng.permutation(parts)[:extra]] += 1
    return [int(x) for x in out]


# ---- zip output ---------------------------------------------------------------------------


class ZipWriter:
    """A zip in the demo's conventions (fixed time and modes, folder entries), written
    member by member so a paper-size archive never sits in memory; renamed into place when
    closed without error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.zf = zipfile.ZipFile(self.tmp, "w", allowZip64=True)
        self.folders: set[str] = set()

    def add(self, name: str, data: bytes) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i]) + "/"
            if folder not in self.folders:
                self.folders.add(folder)
                info = zipfile.ZipInfo(folder, date_time=ZIP_TIME)
                info.create_system = 3
                info.external_attr = (0o40755 << 16) | 0x10
                self.zf.writestr(info, b"")
        info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
        info.create_system = 3
        info.external_attr = 0o100644 << 16
        # Images are compressed already: stored, as fast to read as to write.
        info.compress_type = zipfile.ZIP_STORED if name.endswith((".jpg", ".png")) else \
            zipfile.ZIP_DEFLATED
        self.zf.writestr(info, data)

    def __enter__(self) -> ZipWriter:
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        try:
            self.zf.close()
            if kind is None:
                os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def _mapped(function: Callable[[Any], Any], items: list[Any], workers: int) -> Iterator[Any]:
    """``map`` in input order, in worker processes when ``workers`` > 1."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, items, chunksize=4)


# ---- videos -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoJob:
    dataset: str             # youtube_vis | ovis
    seed: int
    index: int
    name: str
    empty: bool              # a video with no annotation at all (YouTube-VIS has such)


def video_shape(dataset: str, rng: np.random.Generator) -> tuple[int, int]:
    """(annotated frames, instances) of one video, drawn like the real set."""
    if dataset == "youtube_vis":
        # Up to 36 annotated frames, most clips near the top: about 30 on average.
        frames = int(np.clip(round(rng.normal(31.5, 6.5)), 5, PUBLISHED[dataset]["max_frames"]))
        instances = min(10, int(rng.geometric(1 / 2.1)))   # 2.1 per video, most have 1-2
        return frames, instances
    # OVIS: long clips of very different length (about 69 annotated frames on average),
    # crowded (5.8 instances per video on average, a few with dozens).
    frames = int(np.clip(round(rng.lognormal(np.log(60), 0.55)), 5, 300))
    instances = int(np.clip(round(rng.lognormal(np.log(5.0), 0.6)), 1, 40))
    return frames, instances


def _categories(rng: np.random.Generator, count: int, names: tuple[str, ...], person: int,
                share: float) -> list[int]:
    others = [i for i in range(1, len(names) + 1) if i != person]
    return [person if rng.random() < share else int(rng.choice(others)) for _ in range(count)]


def render_video(job: VideoJob) -> tuple[list[tuple[str, bytes]], list[dict[str, Any]]]:
    """One video: its zip members and its annotations (without ids)."""
    rng = np.random.default_rng([job.seed, STREAMS[job.dataset], 1, job.index])
    frames, count = video_shape(job.dataset, rng)
    ytvis = job.dataset == "youtube_vis"
    names = demo_vis.YTVIS_2021_CATEGORIES if ytvis else demo_vis.OVIS_CATEGORIES
    person = names.index("person" if ytvis else "Person") + 1
    if job.empty:
        count = 0
    categories = _categories(rng, count, names, person,
                             YTVIS_PERSON_SHARE if ytvis else OVIS_PERSON_SHARE)
    if ytvis:
        lanes = np.linspace(0.08, 0.92, count + 1) if count else []
        tracks = [demo_vis.make_track(rng, c, names[c - 1], FRAME_HW, (lanes[k], lanes[k + 1]),
                                      frames, absent_rate=0.2) for k, c in enumerate(categories)]
    else:
        tracks = [demo_vis.make_track(rng, c, names[c - 1], FRAME_HW, (0.15, 0.85), frames,
                                      absent_rate=0.4) for c in categories]
    images, masks, hidden = demo_vis.render_clip(rng, tracks, FRAME_HW, frames)
    if ytvis:
        files = [f"{job.name}/{5 * f:05d}.jpg" for f in range(frames)]
        members = [(f"train/JPEGImages/{f}", demo_vis.jpeg_bytes(p))
                   for f, p in zip(files, images, strict=True)]
    else:
        files = [f"{job.name}/img_{f + 1:07d}.jpg" for f in range(frames)]
        members = [(f"train/{f}", demo_vis.jpeg_bytes(p)) for f, p in zip(files, images, strict=True)]
    annotations = []
    for track, track_masks, track_hidden in zip(tracks, masks, hidden, strict=True):
        if all(m is None for m in track_masks):
            continue  # never visible: the official files have no such objects
        annotations.append(_annotation(track, track_masks, track_hidden, ytvis))
    return members, annotations


def _annotation(track: demo_vis.Track, track_masks: list[np.ndarray | None],
                track_hidden: list[float], ytvis: bool) -> dict[str, Any]:
    segmentations, boxes, areas, occlusion = demo_vis.track_frames(track_masks, track_hidden,
                                                                   ytvis)
    entry: dict[str, Any] = {"category_id": track.category_id, "segmentations": segmentations,
                             "bboxes": boxes, "areas": areas, "iscrowd": 0,
                             "height": FRAME_HW[0], "width": FRAME_HW[1], "length": 1}
    if not ytvis:
        entry["occlusion"] = occlusion
    return entry


def write_videos(dataset: str, out: ZipWriter, seed: int, fraction: Fraction,
                 workers: int) -> dict[str, Any]:
    """Write a video dataset's frames into ``out``; return its annotation file's content."""
    videos = scaled(PUBLISHED[dataset]["videos"], fraction)
    names = demo_vis.video_names(np.random.default_rng([seed, STREAMS[dataset], 0]), videos,
                                 10 if dataset == "youtube_vis" else 8)
    empty = videos // 2 if dataset == "youtube_vis" and videos > 2 else -1
    jobs = [VideoJob(dataset, seed, i, name, i == empty) for i, name in enumerate(names)]
    video_entries, annotations = [], []
    for job, (members, video_annotations) in zip(
            jobs, _mapped(render_video, jobs, workers), strict=True):
        for name, data in members:
            out.add(name, data)
        files = [name.split("/", 2 if dataset == "youtube_vis" else 1)[-1] for name, _ in members]
        video_entries.append(demo_vis._video_entry(job.index + 1, FRAME_HW, files))
        for annotation in video_annotations:
            annotations.append({"id": len(annotations) + 1, "video_id": job.index + 1,
                                **annotation})
    if dataset == "youtube_vis":
        return demo_vis._instances("Generated paper-count stand-in for YouTube-VIS 2021 train",
                                   "2021", video_entries, demo_vis.YTVIS_2021_CATEGORIES,
                                   annotations)
    return demo_vis._instances("Generated paper-count stand-in for OVIS train", "1.0",
                               video_entries, demo_vis.OVIS_CATEGORIES, annotations)


# ---- people -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonJob:
    """One identity's images: (folder, camera, stem, kinds) per image."""

    dataset: str             # market1501 | cuhk03
    seed: int
    index: int
    images: tuple[tuple[str, int, str, tuple[str, ...]], ...]
    look: str                # person | junk | distractor


def render_person(job: PersonJob) -> list[tuple[str, str, bytes, bytes]]:
    """(kind, folder/stem, image bytes, mask bytes) for every image of one identity."""
    rng = np.random.default_rng([job.seed, STREAMS[job.dataset], 2, job.index])
    rigs = [demo_persons.random_camera(np.random.default_rng([job.seed, STREAMS[job.dataset], 3, c]))
            for c in range(7)]
    person = demo_persons.draw.random_identity(rng)
    out = []
    for folder, cam, stem, kinds in job.images:
        if job.look != "person":  # junk and distractors: someone new each time
            person = demo_persons.draw.random_identity(rng)
        shot = demo_persons.random_shot(rng, person, rigs[cam])
        if job.dataset == "market1501":
            size = MARKET_HW
            framing: tuple[float | None, float, float] = (None, 0.0, 0.0)
            if job.look == "junk":       # a box that caught only a fragment of someone
                framing = (float(rng.uniform(1.6, 2.2)), float(rng.uniform(-0.35, 0.35)),
                           float(rng.choice([-0.55, 0.55])))
            elif job.look == "distractor":
                framing = (float(rng.uniform(0.5, 0.7)), float(rng.uniform(-0.3, 0.3)),
                           float(rng.uniform(-0.2, 0.2)))
            image, mask = demo_persons.render(shot, size, *framing)
            out.append(("", f"{folder}/{stem}", demo_persons.encode(image, "JPEG"),
                        demo_persons.encode(mask, "PNG")))
            continue
        size = (int(rng.integers(*CUHK03_HEIGHTS)), int(rng.integers(*CUHK03_WIDTHS)))
        loose = (float(rng.uniform(0.68, 0.8)), float(rng.uniform(-0.1, 0.1)),
                 float(rng.uniform(-0.06, 0.06)))
        for kind, framing in (("labeled", (None, 0.0, 0.0)), ("detected", loose)):
            if kind in kinds:
                image, mask = demo_persons.render(shot, size, *framing)
                out.append((kind, f"{folder}/{stem}", demo_persons.encode(image, "PNG"),
                            demo_persons.encode(mask, "PNG")))
    return out


def market_jobs(seed: int, fraction: Fraction) -> list[PersonJob]:
    """Every Market-1501 image as (folder, camera, stem), grouped by identity."""
    counts = PUBLISHED["market1501"]
    rng = np.random.default_rng([seed, STREAMS["market1501"], 0])
    n_train, n_test = scaled(counts["train_ids"], fraction), scaled(counts["test_ids"], fraction)
    train_ids, test_ids = demo_persons.identity_numbers(rng, n_train, n_test, highest=1501)
    cameras = counts["cameras"]
    clock = [int(rng.integers(100, 2000)) for _ in range(cameras + 1)]

    def stem(label: str, cam: int) -> str:
        clock[cam] += int(rng.integers(5, 60))
        seq = 1 + clock[cam] // 150000
        return f"{label}_c{cam}s{seq}_{clock[cam]:06d}_{int(rng.integers(1, 4)):02d}"

    def cams(k: int) -> list[int]:
        return sorted(int(c) for c in rng.choice(np.arange(1, cameras + 1), size=k, replace=False))

    jobs = []
    per_train = spread(scaled(counts["train"], fraction), n_train, rng, low=2)
    for pid, n in zip(train_ids, per_train, strict=True):
        seen = cams(int(rng.integers(2, cameras + 1)))
        images = [("bounding_box_train", c, stem(f"{pid:04d}", c), ())
                  for c in (seen + [int(x) for x in rng.choice(seen, size=max(0, n - len(seen)))])[:n]]
        jobs.append(PersonJob("market1501", seed, len(jobs), tuple(images), "person"))
    good = counts["gallery"] - counts["junk"] - counts["distractors"]
    per_query = spread(scaled(counts["query"], fraction), n_test, rng, low=1, high=cameras)
    per_gallery = spread(scaled(good, fraction), n_test, rng, low=2)
    for pid, q, g in zip(test_ids, per_query, per_gallery, strict=True):
        seen = cams(max(2, min(cameras, q + int(rng.integers(0, 2)))))
        query = [("query", c, stem(f"{pid:04d}", c), ()) for c in seen[:q]]
        # Every camera the person was seen by has gallery images: a query always has a
        # true match under another camera.
        gallery_cams = (seen + [int(x) for x in rng.choice(seen, size=max(0, g - len(seen)))])[:g]
        gallery = [("bounding_box_test", c, stem(f"{pid:04d}", c), ()) for c in gallery_cams]
        jobs.append(PersonJob("market1501", seed, len(jobs), tuple(query + gallery), "person"))
    for label, look, key in (("-1", "junk", "junk"), ("0000", "distractor", "distractors")):
        total = scaled(counts[key], fraction)
        for chunk in spread(total, max(1, total // 50), rng, low=1):
            images = [("bounding_box_test", c, stem(label, c), ())
                      for c in (int(x) for x in rng.integers(1, cameras + 1, size=chunk))]
            jobs.append(PersonJob("market1501", seed, len(jobs), tuple(images), look))
    return jobs


def cuhk03_jobs(seed: int, fraction: Fraction) -> list[PersonJob]:
    """Every CUHK03-NP image (labeled and detected share their shots and names; the few
    images only one of them has are at the end of an identity's list)."""
    labeled, detected = PUBLISHED["cuhk03_labeled"], PUBLISHED["cuhk03_detected"]
    rng = np.random.default_rng([seed, STREAMS["cuhk03"], 0])
    n_train = scaled(labeled["train_ids"], fraction)
    n_test = scaled(labeled["test_ids"], fraction)
    train_ids, test_ids = demo_persons.identity_numbers(rng, n_train, n_test, highest=1467)
    train = {k: scaled(c["train"], fraction) for k, c in
             (("labeled", labeled), ("detected", detected))}
    gallery = {k: scaled(c["gallery"], fraction) for k, c in
               (("labeled", labeled), ("detected", detected))}

    def kinds_of(position: int, counts: dict[str, int]) -> tuple[str, ...]:
        # The union has max(counts) images; the last ones belong to the larger set only.
        return tuple(k for k in ("labeled", "detected") if position < counts[k])

    jobs = []
    position = 0
    for pid, n in zip(train_ids, spread(max(train.values()), n_train, rng, low=2), strict=True):
        images = []
        for k in range(n):
            cam = 1 + (k % 2)
            images.append(("bounding_box_train", cam, f"{pid:04d}_c{cam}_{k + 1}",
                           kinds_of(position, train)))
            position += 1
        jobs.append(PersonJob("cuhk03", seed, len(jobs), tuple(images), "person"))
    position = 0
    for pid, g in zip(test_ids, spread(max(gallery.values()), n_test, rng, low=2), strict=True):
        images = [("query", cam, f"{pid:04d}_c{cam}_{cam}", ("labeled", "detected"))
                  for cam in (1, 2)]
        for k in range(g):
            cam = 1 + (k % 2)
            images.append(("bounding_box_test", cam, f"{pid:04d}_c{cam}_{k + 3}",
                           kinds_of(position, gallery)))
            position += 1
        jobs.append(PersonJob("cuhk03", seed, len(jobs), tuple(images), "person"))
    return jobs


def write_people(dataset: str, jobs: list[PersonJob], images: ZipWriter, masks: ZipWriter,
                 workers: int) -> None:
    root = demo_persons.MARKET_ROOT if dataset == "market1501" else demo_persons.CUHK03_ROOT
    suffix = ".jpg" if dataset == "market1501" else ".png"
    for rendered in _mapped(render_person, jobs, workers):
        for kind, name, image, mask in rendered:
            base = f"{root}/{kind}" if kind else root
            folder, stem = name.split("/")
            images.add(f"{base}/{folder}/{stem}{suffix}", image)
            masks.add(f"{base}/{folder}{MASK_FOLDER_SUFFIX}/{stem}.png", mask)


# ---- all of it ----------------------------------------------------------------------------


def write_scale_downloads(out_dir: Path | str, fraction: Fraction | str | float, seed: int,
                          workers: int = 1, datasets: Iterable[str] = (
                              "youtube_vis", "ovis", "cuhk03", "market1501")) -> list[Path]:
    """Write the official downloads at ``fraction`` of the published counts below
    ``out_dir`` (the file names of ``DEMO_FILES``); return the paths written."""
    out_dir = Path(out_dir)
    fraction = parse_fraction(fraction)
    wanted = set(datasets)
    written = []
    if "youtube_vis" in wanted:
        with ZipWriter(out_dir / YOUTUBE_VIS_ZIP) as zf:
            instances = write_videos("youtube_vis", zf, seed, fraction, workers)
            zf.add("train/instances.json", json_bytes(instances))
        written.append(out_dir / YOUTUBE_VIS_ZIP)
    if "ovis" in wanted:
        with ZipWriter(out_dir / OVIS_ZIP) as zf:
            annotations = write_videos("ovis", zf, seed, fraction, workers)
        write_bytes(out_dir / OVIS_JSON, json_bytes(annotations))
        written += [out_dir / OVIS_ZIP, out_dir / OVIS_JSON]
    for dataset, image_zip, mask_zip, jobs in (
            ("cuhk03", CUHK03_ZIP, CUHK03_MASKS_ZIP, cuhk03_jobs),
            ("market1501", MARKET_ZIP, MARKET_MASKS_ZIP, market_jobs)):
        if dataset in wanted:
            with ZipWriter(out_dir / image_zip) as images, ZipWriter(out_dir / mask_zip) as masks:
                write_people(dataset, jobs(seed, fraction), images, masks, workers)
            written += [out_dir / image_zip, out_dir / mask_zip]
    assert {str(p.relative_to(out_dir)) for p in written} <= set(DEMO_FILES)
    return written


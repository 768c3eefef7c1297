"""Generated stand-ins for the YouTube-VIS 2021 and OVIS training downloads.

Each video is a short clip of a textured background with a few moving objects. Every
object keeps its look (shape family of its category, colours, pattern) in every frame, so
instance retrieval is learnable, while position, scale and pose change. Objects can be
absent in some frames (entering late, leaving early, fully hidden), which the official
files mark with ``null`` entries; one YouTube-VIS video has no annotations at all, as
happens in the real set. Masks are the visible part of each object after drawing them in
depth order, so partial occlusions are real. Annotation files follow the official shapes:

- YouTube-VIS 2021: ``train/JPEGImages/<video>/<00000>.jpg``, ``train/instances.json``,
  40 categories (person = 26), uncompressed column-major RLE (``counts`` a list of ints),
  ``areas`` = mask pixel count.
- OVIS: ``train/<video>/img_0000001.jpg``, ``annotations_train.json``, 25 categories
  (Person = 1), compressed RLE (``counts`` a string), ``areas`` = box area, and an
  ``occlusion`` level per frame.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from overlearning.demo import draw

YTVIS_2021_CATEGORIES = (
    "airplane", "bear", "bird", "boat", "car", "cat", "cow", "deer", "dog", "duck",
    "earless_seal", "elephant", "fish", "flying_disc", "fox", "frog", "giant_panda", "giraffe",
    "horse", "leopard", "lizard", "monkey", "motorbike", "mouse", "parrot", "person", "rabbit",
    "shark", "skateboard", "snake", "snowboard", "squirrel", "surfboard", "tennis_racket",
    "tiger", "train", "truck", "turtle", "whale", "zebra",
)
OVIS_CATEGORIES = (
    "Person", "Bird", "Cat", "Dog", "Horse", "Sheep", "Cow", "Elephant", "Bear", "Zebra",
    "Giraffe", "Poultry", "Giant_panda", "Lizard", "Parrot", "Monkey", "Rabbit", "Tiger", "Fish",
    "Turtle", "Bicycle", "Motorcycle", "Airplane", "Boat", "Vehical",
)
# Shape family per category name (lower case); anything not listed is a four-legged animal.
FAMILY = {
    "airplane": "airplane", "bird": "bird", "duck": "bird", "parrot": "bird",
    "poultry": "bird", "boat": "boat", "car": "vehicle", "truck": "vehicle", "train": "vehicle",
    "motorbike": "vehicle", "motorcycle": "vehicle", "bicycle": "vehicle",
    "vehical": "vehicle", "fish": "fish", "shark": "fish", "whale": "fish",
    "earless_seal": "fish", "flying_disc": "disc", "skateboard": "board",
    "snowboard": "board", "surfboard": "board", "tennis_racket": "racket", "snake": "snake",
    "frog": "blob", "turtle": "blob", "person": "person",
}
# Width / height of the box a family is drawn in.
ASPECT = {"quadruped": 1.4, "bird": 1.1, "fish": 1.8, "vehicle": 1.7, "airplane": 1.9,
          "boat": 1.2, "board": 2.6, "disc": 1.6, "racket": 0.6, "snake": 2.2, "blob": 1.1,
          "person": 0.45}
MIN_VISIBLE_PIXELS = 12
OVIS_OCCLUSION_LEVELS = ("no_occlusion", "slight_occlusion", "severe_occlusion")
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Track:
    """One object of a clip: what it is, how it looks and how it moves."""

    category_id: int
    family: str
    look: draw.Look | draw.Identity
    size: tuple[float, float]          # box height at the first and the last frame
    start: tuple[float, float]         # box centre (y, x) at the first frame
    end: tuple[float, float]
    facing: int
    present: tuple[bool, ...]          # whether it is in view, per frame


def family_of(name: str) -> str:
    return FAMILY.get(name.lower(), "quadruped")


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def video_names(rng: np.random.Generator, count: int, length: int) -> list[str]:
    """Distinct lower-case hex names, sorted (the official folders look like this)."""
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(list("0123456789abcdef"), size=length)))
    return sorted(names)


def presence(rng: np.random.Generator, frames: int, absent_rate: float) -> tuple[bool, ...]:
    """In view in every frame, or entering late / leaving early / away for a while."""
    present = [True] * frames
    if frames >= 3 and rng.random() < absent_rate:
        gap = int(rng.integers(1, max(2, frames // 2)))
        kind = int(rng.integers(3))
        if kind == 0:
            present[:gap] = [False] * gap
        elif kind == 1:
            present[frames - gap:] = [False] * gap
        else:
            start = int(rng.integers(1, frames - gap))
            present[start:start + gap] = [False] * gap
    return tuple(present)


def make_track(rng: np.random.Generator, category_id: int, name: str, frame_hw: tuple[int, int],
               lane: tuple[float, float], frames: int, absent_rate: float) -> Track:
    height, width = frame_hw
    family = family_of(name)
    if family == "person":
        look: draw.Look | draw.Identity = draw.random_identity(rng)
        base = rng.uniform(0.45, 0.75) * height
    else:
        look = draw.random_look(rng)
        base = rng.uniform(0.22, 0.42) * min(height, width * 0.8)
    x0 = rng.uniform(*lane) * width
    y0 = rng.uniform(0.35, 0.65) * height
    move = rng.uniform(-0.18, 0.18, size=2) * np.array([height * 0.4, width])
    end = (float(np.clip(y0 + move[0], 0.2 * height, 0.8 * height)),
           float(np.clip(x0 + move[1], 0.1 * width, 0.9 * width)))
    return Track(category_id, family, look, (float(base), float(base * rng.uniform(0.85, 1.15))),
                 (float(y0), float(x0)), end, int(rng.choice([-1, 1])),
                 presence(rng, frames, absent_rate))


def render_clip(rng: np.random.Generator, tracks: list[Track], frame_hw: tuple[int, int],
                frames: int) -> tuple[list[np.ndarray], list[list[np.ndarray | None]],
                                      list[list[float]]]:
    """Frames (uint8), visible masks per track and frame (None if absent), hidden share."""
    height, width = frame_hw
    scene = draw.background(rng, height, width)
    yy, xx = draw.grid(height, width)
    images: list[np.ndarray] = []
    masks: list[list[np.ndarray | None]] = [[] for _ in tracks]
    hidden: list[list[float]] = [[] for _ in tracks]
    shake = rng.normal(0, 0.6, size=(frames, 2))
    for f in range(frames):
        t = f / max(frames - 1, 1)
        canvas = np.roll(scene, (int(round(shake[f, 0])), int(round(shake[f, 1]))), (0, 1)).copy()
        owner = np.full((height, width), -1, np.int32)
        full: list[np.ndarray | None] = []
        for i, track in enumerate(tracks):  # list order is depth order, the last in front
            if not track.present[f]:
                full.append(None)
                continue
            size = track.size[0] + t * (track.size[1] - track.size[0])
            cy = track.start[0] + t * (track.end[0] - track.start[0])
            cx = track.start[1] + t * (track.end[1] - track.start[1])
            phase = 2.2 * f + i
            if track.family == "person":
                assert isinstance(track.look, draw.Identity)
                drawn = draw.draw_person(canvas, yy, xx, track.look, cy - size / 2, cx, size,
                                         stride=float(np.sin(phase)), facing=track.facing)
            else:
                assert isinstance(track.look, draw.Look)
                u = (yy - cy) / (size / 2)
                v = (xx - cx) / (size * ASPECT[track.family] / 2) * track.facing
                drawn = draw.SHAPES[track.family](u, v, phase)
                draw.paint(canvas, drawn, track.look, u, v)
            owner[drawn] = i
            full.append(drawn)
        for i in range(len(tracks)):
            visible = owner == i
            area = int(visible.sum())
            if full[i] is None or area < MIN_VISIBLE_PIXELS:
                masks[i].append(None)
                hidden[i].append(1.0)
            else:
                masks[i].append(visible.astype(np.uint8))
                hidden[i].append(1.0 - area / max(int(full[i].sum()), 1))
        images.append(draw.finish(canvas, rng, noise=0.015))
    return images, masks, hidden


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Column-major run lengths starting with background, as YouTube-VIS stores masks."""
    flat = mask.ravel(order="F").astype(np.uint8)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _encoded(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _as_json(rle: dict) -> dict:
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def compressed_rle(mask: np.ndarray) -> dict:
    return _as_json(_encoded(mask))


def _box(rle: dict) -> list[float]:
    return [float(x) for x in mask_utils.toBbox(rle)]


def track_frames(track_masks: Sequence[np.ndarray | None], track_hidden: Sequence[float],
                 ytvis: bool) -> tuple[list, list, list, list]:
    """One track's per-frame (segmentations, bboxes, areas, occlusion), None where the object
    is absent: YouTube-VIS stores uncompressed RLE and the mask's area (its occlusion list
    is unused), OVIS compressed RLE, the box's area and an occlusion level."""
    segmentations: list[dict | None] = []
    boxes: list[list[float] | None] = []
    areas: list[float | int | None] = []
    occlusion: list[str | None] = []
    for m, share in zip(track_masks, track_hidden, strict=True):
        if m is None:
            segmentations.append(None)
            boxes.append(None)
            areas.append(None)
            occlusion.append(None)
            continue
        if ytvis:
            rle = uncompressed_rle(m)
            coded = mask_utils.frPyObjects(rle, *rle["size"])
            segmentations.append(rle)
            boxes.append(_box(coded))
            areas.append(int(mask_utils.area(coded)))
            continue
        coded = _encoded(m)  # one encoding gives both the stored RLE and the box
        box = _box(coded)
        segmentations.append(_as_json(coded))
        boxes.append(box)
        areas.append(float(box[2] * box[3]))  # OVIS stores the box area here
        level = 0 if share < 0.05 else 1 if share < 0.5 else 2
        occlusion.append(OVIS_OCCLUSION_LEVELS[level])
    return segmentations, boxes, areas, occlusion


def _video_entry(video_id: int, frame_hw: tuple[int, int], file_names: list[str]) -> dict:
    return {"license": 1, "coco_url": "", "flickr_url": "", "date_captured": "",
            "id": video_id, "width": frame_hw[1], "height": frame_hw[0],
            "length": len(file_names), "file_names": file_names}


def _choose_categories(rng: np.random.Generator, count: int, names: tuple[str, ...],
                       person_id: int, with_person: bool) -> list[int]:
    others = [i for i in range(1, len(names) + 1) if i != person_id]
    chosen = [int(c) for c in rng.choice(others, size=count, replace=True)]
    if with_person:
        chosen[int(rng.integers(count))] = person_id
        if count >= 3 and rng.random() < 0.3:
            chosen[(chosen.index(person_id) + 1) % count] = person_id
    return chosen


def youtube_vis(rng: np.random.Generator, videos: int, frames: int,
                frame_hw: tuple[int, int],
                with_person: Collection[int] = ()) -> tuple[dict[str, bytes], dict]:
    """Zip entries (``train/JPEGImages/...`` and ``train/instances.json``) and the JSON.

    ``with_person``: video positions that must show a person (the demo's valid and test
    videos, so person validation and person queries are defined).
    """
    person_id = YTVIS_2021_CATEGORIES.index("person") + 1
    names = video_names(rng, videos, 10)
    empty = videos // 2  # mid-list, so pairing videos with annotations by position would break
    annotated = [i for i in range(videos) if i != empty]
    person_videos = set(rng.choice(annotated, size=max(1, round(0.45 * len(annotated))),
                                   replace=False).tolist())
    person_videos |= set(with_person) - {empty}
    files: dict[str, bytes] = {}
    video_entries, annotations = [], []
    for index, name in enumerate(names):
        video_id = index + 1
        file_names = [f"{name}/{5 * f:05d}.jpg" for f in range(frames)]
        video_entries.append(_video_entry(video_id, frame_hw, file_names))
        count = 0 if index == empty else int(rng.integers(2, 5))
        categories = _choose_categories(rng, count, YTVIS_2021_CATEGORIES, person_id,
                                        index in person_videos) if count else []
        lanes = np.linspace(0.12, 0.88, count + 1) if count else []
        tracks = [make_track(rng, c, YTVIS_2021_CATEGORIES[c - 1], frame_hw,
                             (lanes[k], lanes[k + 1]), frames, absent_rate=0.4)
                  for k, c in enumerate(categories)]
        if index == annotated[0] and frames >= 2 and tracks:
            # Guarantee one late entry so the demo always exercises `null` frames.
            first = tracks[0]
            tracks[0] = Track(first.category_id, first.family, first.look, first.size,
                              first.start, first.end, first.facing,
                              (False,) + first.present[1:])
        images, masks, hidden = render_clip(rng, tracks, frame_hw, frames)
        for file_name, pixels in zip(file_names, images, strict=True):
            files[f"train/JPEGImages/{file_name}"] = jpeg_bytes(pixels)
        for track, track_masks, track_hidden in zip(tracks, masks, hidden, strict=True):
            if all(m is None for m in track_masks):
                continue  # never visible: the official files have no such objects
            segmentations, boxes, areas, _ = track_frames(track_masks, track_hidden, ytvis=True)
            annotations.append({
                "video_id": video_id, "iscrowd": 0, "height": frame_hw[0],
                "width": frame_hw[1], "length": 1, "segmentations": segmentations,
                "bboxes": boxes, "category_id": track.category_id, "id": len(annotations) + 1,
                "areas": areas})
    return files, _instances("Generated demo stand-in for YouTube-VIS 2021 train", "2021",
                             video_entries, YTVIS_2021_CATEGORIES, annotations)


def _instances(description: str, version: str, videos: list[dict[str, Any]],
               categories: Sequence[str], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """A video-level annotation file in the layout YouTube-VIS and OVIS share."""
    return {
        "info": {"description": description, "version": version, "year": 2021},
        "licenses": [{"id": 1, "name": "demo", "url": ""}],
        "videos": videos,
        "categories": [{"supercategory": "object", "id": i + 1, "name": n}
                       for i, n in enumerate(categories)],
        "annotations": annotations,
    }


def ovis(rng: np.random.Generator, videos: int, frames: int,
         frame_hw: tuple[int, int]) -> tuple[dict[str, bytes], dict]:
    """Zip entries (``train/<video>/img_0000001.jpg``) and ``annotations_train.json``."""
    person_id = OVIS_CATEGORIES.index("Person") + 1
    names = video_names(rng, videos, 8)
    files: dict[str, bytes] = {}
    video_entries, annotations = [], []
    for index, name in enumerate(names):
        video_id = index + 1
        file_names = [f"{name}/img_{f + 1:07d}.jpg" for f in range(frames)]
        video_entries.append(_video_entry(video_id, frame_hw, file_names))
        count = int(rng.integers(2, 5))
        categories = _choose_categories(rng, count, OVIS_CATEGORIES, person_id,
                                        with_person=index % 2 == 0)
        # OVIS is about occlusion: objects share the middle of the frame and overlap.
        tracks = [make_track(rng, c, OVIS_CATEGORIES[c - 1], frame_hw, (0.3, 0.7), frames,
                             absent_rate=0.25) for c in categories]
        images, masks, hidden = render_clip(rng, tracks, frame_hw, frames)
        for file_name, pixels in zip(file_names, images, strict=True):
            files[f"train/{file_name}"] = jpeg_bytes(pixels)
        for track, track_masks, track_hidden in zip(tracks, masks, hidden, strict=True):
            if all(m is None for m in track_masks):
                continue
            segmentations, boxes, areas, occlusion = track_frames(track_masks, track_hidden,
                                                                  ytvis=False)
            annotations.append({
                "id": len(annotations) + 1, "video_id": video_id,
                "category_id": track.category_id, "segmentations": segmentations,
                "bboxes": boxes, "areas": areas, "occlusion": occlusion, "iscrowd": 0,
                "height": frame_hw[0], "width": frame_hw[1], "length": 1})
    return files, _instances("Generated demo stand-in for OVIS train", "1.0", video_entries,
                             OVIS_CATEGORIES, annotations)

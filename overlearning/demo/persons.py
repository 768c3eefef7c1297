"""Generated stand-ins for the CUHK03-NP and Market-1501 downloads and their MGCAM masks.

Every identity has one look (clothes, pattern, hair, skin, bag) under every camera; each
camera has its own background, colour cast and exposure, and each image its own pose
jitter (position, scale, stride, facing), so re-identification is possible but not trivial.
The protocol follows the real sets: training identities are disjoint from test ones; each
test identity has one query image per camera and its other images in the gallery, so every
query identity appears in the gallery under another camera. Names follow the official
patterns:

- CUHK03-NP: ``cuhk03-np/{labeled,detected}/{bounding_box_train,bounding_box_test,query}/
  {id:04d}_c{cam}_{n}.png`` (``n`` counts the identity's images over both cameras; the
  "detected" boxes are the same shots framed less tightly, as a detector would);
- Market-1501: ``Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query}/
  {id:04d}_c{cam}s{seq}_{frame:06d}_{n:02d}.jpg``, plus junk (``-1_...``, partial bodies)
  and distractor (``0000_...``, strangers badly framed) images in ``bounding_box_test``.

MGCAM-style person masks sit in a ``<folder>_seg/`` beside each image folder: one PNG per
image with the same stem, 255 on the person and 0 elsewhere.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from overlearning.demo import draw

MARKET_ROOT = "Market-1501-v15.09.15"
CUHK03_ROOT = "cuhk03-np"
MARKET_SIZE = (128, 64)                 # height, width of every Market-1501 image
CUHK03_HEIGHTS = (104, 136)             # CUHK03 boxes vary in size
CUHK03_WIDTHS = (40, 56)
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")


@dataclass(frozen=True)
class Camera:
    tint: tuple[float, float, float]
    gain: np.ndarray                    # per-channel exposure / colour cast
    blur: float
    noise: float


@dataclass(frozen=True)
class Shot:
    """One image to draw: who, which camera, and how the person is framed and posed."""

    person: draw.Identity
    camera: Camera
    seed: int
    fill: float                         # figure height / image height
    dx: float                           # horizontal offset, share of the image width
    dy: float
    stride: float
    facing: int


def random_camera(rng: np.random.Generator) -> Camera:
    cast = rng.uniform(0.8, 1.2, size=3)
    return Camera(draw.random_colour(rng, (0.05, 0.4), (0.35, 0.9)),
                  (cast / cast.mean() * rng.uniform(0.75, 1.2)).astype(np.float32),
                  float(rng.uniform(0.0, 0.8)), float(rng.uniform(0.01, 0.035)))


def random_shot(rng: np.random.Generator, person: draw.Identity, camera: Camera) -> Shot:
    return Shot(person, camera, int(rng.integers(2**31)), float(rng.uniform(0.8, 0.92)),
                float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.03, 0.03)),
                float(rng.uniform(-1, 1)), int(rng.choice([-1, 1])))


def render(shot: Shot, size: tuple[int, int], fill: float | None = None, dx: float = 0.0,
           dy: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The image (uint8 RGB) and its person mask (uint8 0/255) of one shot.

    ``fill``, ``dx`` and ``dy`` reframe the shot (a looser detector box, a junk crop).
    """
    height, width = size
    rng = np.random.default_rng(shot.seed)
    canvas = draw.background(rng, height, width, tint=shot.camera.tint)
    yy, xx = draw.grid(height, width)
    figure = (fill if fill is not None else shot.fill) * height
    top = (height - figure) / 2 + (shot.dy + dy) * height
    silhouette = draw.draw_person(canvas, yy, xx, shot.person, top,
                                  width / 2 + (shot.dx + dx) * width, figure,
                                  stride=shot.stride, facing=shot.facing)
    image = draw.finish(canvas, rng, gain=shot.camera.gain, noise=shot.camera.noise,
                        blur=shot.camera.blur)
    return image, silhouette.astype(np.uint8) * 255


def encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    else:
        Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def identity_numbers(rng: np.random.Generator, train: int, test: int,
                     highest: int) -> tuple[list[int], list[int]]:
    """Disjoint, sorted identity numbers for the training and test identities."""
    pool = rng.choice(np.arange(1, highest + 1), size=train + test, replace=False)
    return sorted(int(i) for i in pool[:train]), sorted(int(i) for i in pool[train:])


def protocol(cameras: int, images_per_camera: int) -> list[tuple[int, int, str]]:
    """(camera, index within camera, folder) for one test identity's images.

    One query image per camera; with a single image per camera only the first camera's
    goes to the query, so the gallery still has the person under another camera.
    """
    out = []
    for cam in range(1, cameras + 1):
        for k in range(images_per_camera):
            is_query = k == 0 and (images_per_camera > 1 or cam == 1)
            out.append((cam, k, "query" if is_query else "bounding_box_test"))
    return out


def shot_plan(train_ids: Sequence[int], test_ids: Sequence[int], cameras: int,
              images_per_camera: int) -> list[tuple[int, list[tuple[int, int, str]]]]:
    """(identity, its images as (camera, index within camera, folder)): every camera's
    images of a training identity, the query/gallery protocol of a test identity."""
    plan = [(pid, [(cam, k, "bounding_box_train") for cam in range(1, cameras + 1)
                   for k in range(images_per_camera)]) for pid in train_ids]
    plan += [(pid, protocol(cameras, images_per_camera)) for pid in test_ids]
    return plan


def train_count(persons: int) -> int:
    return max(2, persons // 2)


def _put(entries: dict[str, bytes], masks: dict[str, bytes], root: str, folder: str,
         stem: str, image: np.ndarray, mask: np.ndarray, fmt: str) -> None:
    suffix = ".jpg" if fmt == "JPEG" else ".png"
    name = f"{root}/{folder}/{stem}{suffix}"
    if name in entries:
        raise AssertionError(f"generated the same file name twice: {name}")
    entries[name] = encode(image, fmt)
    masks[f"{root}/{folder}_seg/{stem}.png"] = encode(mask, "PNG")


def cuhk03(rng: np.random.Generator, persons: int, cameras: int,
           images_per_camera: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Entries of ``cuhk03-np.zip`` and of ``cuhk03-np-mgcam-masks.zip``."""
    train_ids, test_ids = identity_numbers(rng, train_count(persons), persons,
                                           highest=4 * (persons + train_count(persons)))
    rigs = [random_camera(rng) for _ in range(cameras)]
    images: dict[str, bytes] = {}
    masks: dict[str, bytes] = {}
    for pid, shots in shot_plan(train_ids, test_ids, cameras, images_per_camera):
        person = draw.random_identity(rng)
        for cam, k, folder in shots:
            size = (int(rng.integers(*CUHK03_HEIGHTS)), int(rng.integers(*CUHK03_WIDTHS)))
            shot = random_shot(rng, person, rigs[cam - 1])
            loose = (float(rng.uniform(0.68, 0.8)), float(rng.uniform(-0.1, 0.1)),
                     float(rng.uniform(-0.06, 0.06)))
            stem = f"{pid:04d}_c{cam}_{(cam - 1) * images_per_camera + k + 1}"
            for kind, framing in (("labeled", (None, 0.0, 0.0)), ("detected", loose)):
                image, mask = render(shot, size, *framing)
                _put(images, masks, f"{CUHK03_ROOT}/{kind}", folder, stem, image, mask, "PNG")
    return images, masks


def market1501(rng: np.random.Generator, persons: int, cameras: int,
               images_per_camera: int) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Entries of ``Market-1501-v15.09.15.zip`` and of the MGCAM mask archive."""
    train_ids, test_ids = identity_numbers(rng, train_count(persons), persons,
                                           highest=min(1501, 4 * (persons + train_count(persons))))
    rigs = [random_camera(rng) for _ in range(cameras)]
    images: dict[str, bytes] = {}
    masks: dict[str, bytes] = {}
    frame_clock = [int(rng.integers(100, 2000)) for _ in range(cameras)]

    def stem_for(label: str, cam: int, n: int) -> str:
        # Frames advance per camera, so names never repeat and look like a recording.
        frame_clock[cam - 1] += int(rng.integers(5, 200))
        seq = 1 + frame_clock[cam - 1] // 20000
        return f"{label}_c{cam}s{seq}_{frame_clock[cam - 1]:06d}_{n:02d}"

    for pid, shots in shot_plan(train_ids, test_ids, cameras, images_per_camera):
        person = draw.random_identity(rng)
        for cam, _k, folder in shots:
            shot = random_shot(rng, person, rigs[cam - 1])
            image, mask = render(shot, MARKET_SIZE)
            stem = stem_for(f"{pid:04d}", cam, int(rng.integers(1, 4)))
            _put(images, masks, MARKET_ROOT, folder, stem, image, mask, "JPEG")
    extras = max(2, persons // 3)
    for index in range(2 * extras):
        junk = index % 2 == 0
        cam = int(rng.integers(1, cameras + 1))
        shot = random_shot(rng, draw.random_identity(rng), rigs[cam - 1])
        if junk:   # a box that caught only a fragment of someone
            framing = (float(rng.uniform(1.6, 2.2)), float(rng.uniform(-0.35, 0.35)),
                       float(rng.choice([-0.55, 0.55])))
        else:      # a stranger, badly framed (the set's "distractors")
            framing = (float(rng.uniform(0.5, 0.7)), float(rng.uniform(-0.3, 0.3)),
                       float(rng.uniform(-0.2, 0.2)))
        image, mask = render(shot, MARKET_SIZE, *framing)
        stem = stem_for("-1" if junk else "0000", cam, int(rng.integers(1, 4)))
        _put(images, masks, MARKET_ROOT, "bounding_box_test", stem, image, mask, "JPEG")
    return images, masks

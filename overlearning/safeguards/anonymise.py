"""Anonymised copies of the person images that end up in a search index (third safeguard).

Instead of leaving persons out of the index (index exclusion), their images are desensitised
the way the privacy-preserving re-ID literature does it (mosaic, Gaussian blur, additive
Gaussian noise) and stay in the index. docs/anonymisation.md defines each method exactly;
the summary:

- the *foreground* of a crop is every pixel with a channel above ``background_level``; the
  masked (black) background is never changed, so the silhouette stays and the model sees
  the same black surround it was trained on;
- ``mosaic``: the image is tiled into strength x strength blocks from the top-left corner
  (smaller blocks at the right and bottom edges); every foreground pixel of a block becomes
  the mean of the block's foreground pixels;
- ``blur``: a Gaussian with standard deviation ``strength`` pixels (PIL's "radius"),
  normalised over the foreground so black does not bleed into the object;
- ``noise``: ``x/255 + strength * N(0, 1)`` per pixel and channel, clipped to [0, 1], with a
  seed derived from the image's file name so reruns are byte-identical.

A variant of a set stores only what it changes: the anonymised images, in a delta pack
(``changed.zip``, overlearning/core/packs.py) that readers lay over the set's own pack
(``open_pack(delta, base=set pack)``), so the evaluation indexes it exactly like the
original without a copy of every unchanged image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from overlearning.core.atomic import write_json
from overlearning.core.errors import ConfigError, WorkflowInputError
from overlearning.core.image_io import DEFAULT_JPEG_QUALITY, IMAGE_SUFFIXES, encode_image
from overlearning.core.names import variant_name
from overlearning.core.packs import open_pack, write_pack
from overlearning.data.crop_sets import load_crop_set
from overlearning.safeguards.categories import (
    DETECTED,
    MISCLASSIFIED_EXCLUSION,
    MISCLASSIFIED_INCLUSION,
    UNDETECTED,
    read_exclusion_lists,
)

Method = Literal["mosaic", "blur", "noise"]
METHODS: tuple[str, ...] = ("mosaic", "blur", "noise")

# Detector verdicts (exclusion JSON categories) as a deployment sees them. Crops the detector
# calls a person are anonymised; GT persons it never found are not in a detection-based index
# at all (as in the exclusion safeguard); persons it called something else stay raw (the leak).
DETECTED_AS_PERSON = (DETECTED, MISCLASSIFIED_EXCLUSION)
NOT_INDEXED = (UNDETECTED,)
EXCLUSION_CATEGORIES = (*DETECTED_AS_PERSON, *NOT_INDEXED, MISCLASSIFIED_INCLUSION)

DELTA = "changed.zip"
MANIFEST = "anonymised.json"
EXCLUSION = "exclusion.json"

# Gaussian kernels are cut at this many standard deviations (scipy's default).
BLUR_TRUNCATE = 4.0


@dataclass(frozen=True)
class Anonymiser:
    """One anonymisation policy: a method, its strength and the knobs that make it exact."""

    method: Method
    strength: float
    seed: int = 0
    background_level: int = 0
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"anonymisation method {self.method!r} unknown (use one of {METHODS})")
        if not self.strength > 0:
            raise ConfigError(f"anonymisation {self.method}: strength must be > 0, got {self.strength}")
        if self.method == "mosaic" and float(self.strength) != int(self.strength):
            raise ConfigError(f"anonymisation mosaic: block size must be a whole number, got {self.strength}")
        if not 0 <= self.background_level <= 254:
            raise ConfigError(f"anonymisation background_level must be in [0, 254], got {self.background_level}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"anonymisation jpeg_quality must be in [1, 100], got {self.jpeg_quality}")

    def __call__(self, image: np.ndarray, name: str) -> np.ndarray:
        """Anonymise an H x W x 3 uint8 image; ``name`` (relative file name) seeds the noise."""
        return anonymise_pixels(image, self.method, self.strength, seed=noise_seed(self.seed, name),
                                background_level=self.background_level)


def noise_seed(base_seed: int, name: str) -> int:
    """A 64-bit seed from the config seed and the image's relative file name.

    It does not depend on the method or strength, so a noise sweep scales one fixed pattern
    per image (common random numbers) and the GT and detector sets agree on shared files.
    """
    digest = hashlib.sha256(f"{base_seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def foreground_mask(image: np.ndarray, background_level: int = 0) -> np.ndarray:
    """H x W bool: pixels with any channel above ``background_level`` (the object)."""
    return image.max(axis=2) > background_level


def _round_to_uint8(values: np.ndarray) -> np.ndarray:
    # Halves go up (not numpy's round-half-to-even) so hand-computed means are easy to check.
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def mosaic(image: np.ndarray, block: int, foreground: np.ndarray) -> np.ndarray:
    """Replace the foreground of every block x block tile by the tile's foreground mean."""
    height, width, channels = image.shape
    rows, cols = -(-height // block), -(-width // block)
    # Pad to whole tiles with zero weight so edge tiles average only their own pixels.
    padded = np.zeros((rows * block, cols * block, channels), dtype=np.float64)
    weight = np.zeros((rows * block, cols * block), dtype=np.float64)
    padded[:height, :width] = image * foreground[..., None]
    weight[:height, :width] = foreground
    sums = padded.reshape(rows, block, cols, block, channels).sum(axis=(1, 3))
    counts = weight.reshape(rows, block, cols, block).sum(axis=(1, 3))
    means = sums / np.maximum(counts, 1)[..., None]
    tiled = np.repeat(np.repeat(_round_to_uint8(means), block, axis=0), block, axis=1)
    return np.where(foreground[..., None], tiled[:height, :width], image)


def blur(image: np.ndarray, sigma: float, foreground: np.ndarray) -> np.ndarray:
    """Gaussian blur (std ``sigma`` px) normalised over the foreground; background unchanged.

    value(p) = sum_q g(p - q) m(q) x(q) / sum_q g(p - q) m(q) over pixels q inside the image,
    g the sampled Gaussian cut at ``BLUR_TRUNCATE`` sigma, m the foreground indicator.
    """
    weight = foreground.astype(np.float64)
    kwargs: dict[str, Any] = {"mode": "constant", "cval": 0.0, "truncate": BLUR_TRUNCATE}
    numerator = gaussian_filter(image * weight[..., None], sigma=(sigma, sigma, 0), **kwargs)
    denominator = gaussian_filter(weight, sigma=sigma, **kwargs)
    # The pixel's own weight g(0) keeps the denominator positive wherever the mask is set.
    values = numerator / np.where(foreground, denominator, 1.0)[..., None]
    return np.where(foreground[..., None], _round_to_uint8(values), image)


def noise(image: np.ndarray, std: float, foreground: np.ndarray, seed: int) -> np.ndarray:
    """Add N(0, std^2) on the [0, 1] scale to every foreground pixel and channel, clipped."""
    draws = np.random.Generator(np.random.PCG64(seed)).standard_normal(image.shape)
    values = 255.0 * np.clip(image / 255.0 + std * draws, 0.0, 1.0)
    return np.where(foreground[..., None], _round_to_uint8(values), image)


def anonymise_pixels(image: np.ndarray, method: str, strength: float, *, seed: int = 0,
                     background_level: int = 0) -> np.ndarray:
    """Anonymise an H x W x 3 uint8 image with one method; the background is left as it is."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    foreground = foreground_mask(image, background_level)
    if method == "mosaic":
        return mosaic(image, int(strength), foreground)
    if method == "blur":
        return blur(image, float(strength), foreground)
    if method == "noise":
        return noise(image, float(strength), foreground, seed)
    raise ConfigError(f"anonymisation method {method!r} unknown (use one of {METHODS})")


# --- which images of a set are anonymised -------------------------------------------------


def gt_person_names(split_dir: Path | str, person_category: int) -> list[str]:
    """Crop names whose ground-truth category is the person category (the oracle policy)."""
    return [item.name for item in load_crop_set(split_dir, person_category, persons="only")]


def read_exclusion(path: Path | str, known: Iterable[str]) -> dict[str, list[str]]:
    """The exclusion JSON ``{category: [crop names]}``, checked against the set's crop names."""
    return read_exclusion_lists(path, known)


def detected_person_policy(exclusion: Mapping[str, list[str]]) -> tuple[list[str], list[str]]:
    """(crops to anonymise, crops a detection-based index never holds) for a deployment."""
    anonymise = sorted({n for c in DETECTED_AS_PERSON for n in exclusion[c]})
    not_indexed = sorted({n for c in NOT_INDEXED for n in exclusion[c]})
    return anonymise, not_indexed


# --- writing a set ------------------------------------------------------------------------


def write_anonymised_set(images: Path | str, out: Path | str, selected: Iterable[str],
                         anonymiser: Anonymiser, *, selection: str,
                         not_indexed: Iterable[str] | None = None) -> dict[str, Any]:
    """Write ``out/{changed.zip, anonymised.json, exclusion.json}`` for the pack ``images``.

    ``changed.zip`` holds the ``selected`` images anonymised, under their names in
    ``images``; every other image is read from ``images`` itself. ``anonymised.json`` lists
    what changed; ``exclusion.json`` names the images a detection-based index would not
    hold (``not_indexed``; empty lists when none is given), in the exclusion JSON format.
    Each file is written atomically, the manifest and lists once every image is done and
    the delta last: a failure leaves no file of this run.
    """
    out = Path(out)
    base = open_pack(images)
    files = [n for n in base.names() if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    present = set(files)
    selected = sorted(set(selected))
    missing = [name for name in selected if name not in present]
    if missing:
        raise WorkflowInputError(images, f"{len(missing)} image(s) to anonymise are missing, "
                                         f"e.g. {missing[0]!r}")
    unindexed = sorted(set(not_indexed or ()))
    manifest = {
        "method": anonymiser.method,
        "strength": float(anonymiser.strength),
        "seed": anonymiser.seed,
        "background_level": anonymiser.background_level,
        "jpeg_quality": anonymiser.jpeg_quality,
        "selection": selection,
        "images": len(files),
        "anonymised": selected,
        "not_indexed": unindexed,
    }
    exclusion: dict[str, list[str]] = {c: [] for c in EXCLUSION_CATEGORIES}
    exclusion[NOT_INDEXED[0]] = unindexed
    with base, write_pack(out / DELTA) as delta:
        for name in tqdm(selected, desc=f"{variant_name(anonymiser.method, anonymiser.strength)} "
                                        f"{out.name}", unit="img"):
            pixels = anonymiser(base.read_rgb(name), name)
            delta.add(name, encode_image(pixels, Path(name).suffix,
                                         quality=anonymiser.jpeg_quality))
        # Only once every image is done; the delta itself is renamed into place last.
        write_json(out / MANIFEST, manifest)
        write_json(out / EXCLUSION, exclusion)
    return manifest


def set_names(images: Path | str, split_dir: Path | str | None = None) -> list[str]:
    """Every item of a set: the crops of ``split_dir``'s index, else the pack's images."""
    if split_dir is not None:
        return [item.name for item in load_crop_set(split_dir, person_category=-1,
                                                    images=open_pack(images))]
    return [n for n in open_pack(images).names() if Path(n).suffix.lower() in IMAGE_SUFFIXES]


def anonymise_set(*, images: Path | str, out: Path | str, anonymiser: Anonymiser,
                  selection: Literal["gt_persons", "detected_persons"],
                  split_dir: Path | str | None = None, person_category: int | None = None,
                  exclusion: Path | str | None = None) -> dict[str, Any]:
    """Choose the images of one set by ``selection`` and write its anonymised copy.

    A set is a VIS split (``split_dir`` with its crop index; ``images`` its crop pack) or
    a person pack (no ``split_dir``; every image shows a person).

    - ``gt_persons`` (oracle): crops whose GT category is ``person_category``; in a person
      folder every image;
    - ``detected_persons`` (deployment): the items the detector calls a person (``exclusion``
      JSON); GT persons it missed are listed as not indexed, as in the exclusion safeguard.
    """
    names = set_names(images, split_dir)
    not_indexed: list[str] | None = None
    if selection == "gt_persons":
        if split_dir is None:
            selected = names
        elif person_category is None:
            raise ConfigError("selection 'gt_persons' of a crop set needs the person category")
        else:
            selected = gt_person_names(split_dir, person_category)
    elif selection == "detected_persons":
        if exclusion is None:
            raise ConfigError("selection 'detected_persons' needs the exclusion JSON")
        selected, not_indexed = detected_person_policy(read_exclusion(exclusion, names))
    else:
        raise ConfigError(f"unknown selection {selection!r} (gt_persons, detected_persons)")
    return write_anonymised_set(images, out, selected, anonymiser, selection=selection,
                                not_indexed=not_indexed)


# --- evaluating raw queries against an anonymised index ----------------------------------

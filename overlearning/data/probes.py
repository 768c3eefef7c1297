"""Partial-person probes: query images reduced to one part of the person.

``torso`` is the study's circumvention probe: a horizontal band that drops the top
``int(h * top)`` rows and the bottom ``int(h * bottom)`` rows (40% and 57.5% by default).
The occlusion grid keeps one half of the image and crops the rest away, as if it were
occluded: ``upper_half`` keeps rows ``[0, h // 2)``, ``lower_half`` rows ``[h // 2, h)``,
``left_half`` columns ``[0, w // 2)``, ``right_half`` columns ``[w // 2, w)``. Probes are
made from the masked queries, so the background stays black, and keep their file names so
identities and cameras still parse. Queries are read from the person set's query pack and
each probe is written as a pack (``probes/<probe>.zip``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import DEFAULT_JPEG_QUALITY, IMAGE_SUFFIXES, encode_image
from overlearning.core.packs import open_pack, write_pack
from overlearning.core.parallel import ordered_parallel_map

log = logging.getLogger(__name__)

OCCLUSIONS = ("upper_half", "lower_half", "left_half", "right_half")


def torso_band(pixels: np.ndarray, top: float, bottom: float) -> np.ndarray:
    """Rows left after dropping ``int(h * top)`` from the top and ``int(h * bottom)`` below."""
    if not (0.0 <= top and 0.0 <= bottom and top + bottom < 1.0):
        raise ValueError(f"torso band needs top, bottom >= 0 and top + bottom < 1 "
                         f"(got {top}, {bottom})")
    height = pixels.shape[0]
    return pixels[int(height * top):height - int(height * bottom)]


def half(pixels: np.ndarray, which: str) -> np.ndarray:
    """The visible half named by ``which`` (one of OCCLUSIONS)."""
    height, width = pixels.shape[:2]
    regions = {
        "upper_half": pixels[:height // 2],
        "lower_half": pixels[height // 2:],
        "left_half": pixels[:, :width // 2],
        "right_half": pixels[:, width // 2:],
    }
    if which not in regions:
        raise ValueError(f"unknown occlusion {which!r}; choose from {', '.join(OCCLUSIONS)}")
    return regions[which]


def probe_region(pixels: np.ndarray, probe: str, top: float, bottom: float) -> np.ndarray:
    """The part of a person image that the probe ``probe`` shows."""
    if probe == "torso":
        return torso_band(pixels, top, bottom)
    return half(pixels, probe)


def make_probe(query_pack: Path | str, out_pack: Path | str, probe: str, *, top: float = 0.4,
               bottom: float = 0.575, ext: str = "jpg", quality: int = DEFAULT_JPEG_QUALITY,
               threads: int = 1) -> dict[str, int]:
    """Write the pack ``out_pack`` of every masked query's probe; empty regions are skipped."""
    out_pack = Path(out_pack)
    if probe != "torso" and probe not in OCCLUSIONS:
        raise ValueError(f"unknown probe {probe!r}")
    probe_region(np.zeros((4, 4, 3), np.uint8), probe, top, bottom)  # reject bad settings early
    queries = open_pack(query_pack)
    files = [n for n in queries.names() if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise WorkflowInputError(query_pack, "no query images")

    def cut(name: str) -> bytes | None:
        region = probe_region(queries.read_rgb(name), probe, top, bottom)
        if region.shape[0] == 0 or region.shape[1] == 0:
            return None
        return encode_image(region, f".{ext}", quality)

    written = 0
    with write_pack(out_pack) as out:
        results = ordered_parallel_map(cut, files, threads, len(files), f"probe {probe}")
        for name, data in zip(files, results, strict=True):
            if data is not None:
                out.add(f"{Path(name).stem}.{ext}", data)
                written += 1
    skipped = len(files) - written
    log.info("%s: %d probe images from %d queries, %d skipped (empty region)", out_pack,
             written, len(files), skipped)
    return {"queries": len(files), "written": written, "skipped_empty": skipped}

"""Object masks: COCO segmentations to pixels and back, via pycocotools.

YouTube-VIS stores uncompressed RLE (``counts`` a list), OVIS compressed RLE (``counts`` a
string) and polygons may occur; all three decode to an H x W array of 0/1 here, after
checking that the mask has the frame's size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from overlearning.core.errors import WorkflowInputError


def check_segmentation(segmentation: Any, height: int, width: int, source: object,
                       entry: str) -> None:
    """Check one COCO segmentation without decoding it: shape, mask size, RLE length.

    Compressed RLE strings are only typed here (their length shows when decoded, where
    :func:`decode_segmentation` names the entry).
    """
    def bad(expected: str, found: Any) -> WorkflowInputError:
        return WorkflowInputError(source, f"{entry}: expected {expected}, found {found!r}"[:300])

    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                    and all(isinstance(v, int | float) and not isinstance(v, bool)
                            and math.isfinite(v) for v in polygon)):
                raise bad("polygons of >= 3 finite [x, y] points", polygon)
        if not segmentation:
            raise bad("a non-empty polygon list", segmentation)
        return
    if not isinstance(segmentation, dict) or "counts" not in segmentation \
            or "size" not in segmentation:
        raise bad("an RLE {size, counts} or a polygon list", segmentation)
    size, counts = segmentation["size"], segmentation["counts"]
    if size != [height, width]:
        raise bad(f"mask size [{height}, {width}] (the frame's)", size)
    if isinstance(counts, list):
        # set(map(type, ...)) runs in C: this is checked for every frame of every object.
        if counts and (set(map(type, counts)) != {int} or min(counts) < 0):
            raise bad("RLE counts of non-negative integers", "other values")
        if sum(counts) != height * width:
            raise bad(f"RLE counts covering {height * width} pixels", sum(counts))
    elif not isinstance(counts, str) or not counts:
        raise bad("RLE counts as a list or a non-empty string", counts)


def decode_segmentation(segmentation: Any, height: int, width: int, where: object) -> np.ndarray:
    """H x W uint8 0/1 mask of one segmentation; ``where`` names the input in errors."""
    if isinstance(segmentation, list):
        if not segmentation or not all(isinstance(p, list) and len(p) >= 6 for p in segmentation):
            raise WorkflowInputError(where, "polygon segmentation needs lists of >= 3 points")
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise WorkflowInputError(
                where, f"mask size {size[0]}x{size[1]} differs from the frame {height}x{width}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if sum(counts) != height * width:
                raise WorkflowInputError(
                    where, f"RLE counts cover {sum(counts)} pixels, the mask has {height * width}")
            rle = coco_mask.frPyObjects({"size": size, "counts": counts}, height, width)
        elif isinstance(counts, str | bytes):
            rle = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
        else:
            raise WorkflowInputError(where, "RLE counts must be a list or a string")
    else:
        raise WorkflowInputError(where, "segmentation is neither a polygon list nor an RLE dict")
    try:
        decoded = coco_mask.decode(rle)
    except Exception as exc:  # pycocotools raises bare exceptions on malformed strings
        raise WorkflowInputError(where, f"undecodable RLE ({exc})") from None
    return decoded.astype(np.uint8, copy=False)


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE with ``counts`` as str, the JSON-friendly COCO form."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}

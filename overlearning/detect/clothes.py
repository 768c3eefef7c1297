"""Upper-clothes probes: the garment of each masked query person, masked and cropped.

Two methods. The authors' default: a clothes segmenter (SegFormer-B2 on ATR,
overlearning.models.segformer) labels every pixel and the upper-clothes and dress pixels are
kept. The alternative: GroundingDINO is prompted with garment names; the most confident garment box goes to SAM;
the mask is refined to its largest external contour (filled), the image is cropped to the
mask's bounding box and everything outside the mask is black (REFERENCE.md, step 6, the
authors' GroundingDINO + SAM variant). The queries are read from the person set's query
pack and the probes written as a pack (``probes/clothes.zip``); a probe keeps the query's
file name. An image
where no garment is detected, or whose garment mask is empty, is counted and, per config,
skipped (``skip``) or copied unchanged (``whole``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import DEFAULT_JPEG_QUALITY, encode_image
from overlearning.core.packs import ImageSource, image_names, open_images, write_pack
from overlearning.detect.detection_files import write_json
from overlearning.detect.grounding import GroundingDetector, detect_images, load_detector
from overlearning.detect.segmentation import (
    make_predictor,
    mask_to_polygon,
    polygon_to_mask,
    segment_boxes,
)
from overlearning.models.detectors import device_for, load_sam
from overlearning.models.segformer import label_ids, load_segformer, segment_labels

ON_MISSING = ("skip", "whole")


def masked_crop(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The mask's bounding box of ``image`` with pixels outside the mask black (None: empty)."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    window = mask[y0:y1 + 1, x0:x1 + 1]
    return image[y0:y1 + 1, x0:x1 + 1] * window[..., None].astype(image.dtype)


GarmentMask = Callable[[str], tuple[dict[str, Any], np.ndarray | None, bool]]


def write_probes(queries: ImageSource, names: Sequence[str], out_pack: Path | str,
                 garment: GarmentMask, on_missing: str, quality: int) -> dict[str, Any]:
    """Write member ``<name>`` of ``out_pack`` per query from ``garment(name)`` -> (record
    entry, image or None, garment found?); images without a garment crop are skipped or
    copied whole."""
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    images: dict[str, Any] = {}
    counts = {"images": len(names), "cropped": 0, "no_garment": 0, "empty_mask": 0,
              "skipped": 0, "whole": 0}
    with write_pack(out_pack) as out:
        for name in tqdm(sorted(names), desc="clothes probes", unit="image", file=sys.stderr):
            entry, crop, found = garment(name)
            counts["no_garment"] += not found
            counts["empty_mask"] += found and crop is None
            if crop is not None:
                out.add(name, encode_image(crop, Path(name).suffix, quality))
                entry["outcome"] = "cropped"
            elif on_missing == "whole":
                out.add(name, queries.read_bytes(name))
                entry["outcome"] = "whole"
            else:
                entry["outcome"] = "skipped"
            counts[entry["outcome"]] += 1
            images[name] = entry
    return {"images": images, "summary": counts}


def clothes_probes(detector: GroundingDetector, sam: Any, query_dir: Path | str,
                   names: Sequence[str], out_dir: Path | str, *, mask_threshold: float,
                   multimask: str = "union", on_missing: str = "skip", batch_size: int = 1,
                   quality: int = DEFAULT_JPEG_QUALITY) -> dict[str, Any]:
    """GroundingDINO + SAM probes; return the per-image record and counts.

    The record (``{"images": {name: {...}}, "summary": {...}}``) lists each image's garment
    detections, the chosen one (index, or null), its polygon and the outcome (``cropped``,
    ``skipped`` or ``whole``).
    """
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
    queries = open_images(query_dir)
    if not names:
        raise WorkflowInputError(query_dir, "no query images to make clothes probes from")
    detections = detect_images(detector, queries, names, batch_size, desc="garments")
    predictor = make_predictor(sam)

    def garment(name: str) -> tuple[dict[str, Any], np.ndarray | None, bool]:
        dets = detections[name]
        entry: dict[str, Any] = {"detections": dets, "selected": None, "mask_polygon": []}
        if not dets:
            return entry, None, False
        # detect_images orders by confidence: the first is the best garment.
        image = queries.read_rgb(name)
        mask = segment_boxes(predictor, image, [dets[0]["box"]], mask_threshold, multimask)[0]
        polygon = mask_to_polygon(mask)
        entry.update(selected=0, mask_polygon=polygon)
        return entry, masked_crop(image, polygon_to_mask(polygon, mask.shape)), True

    return write_probes(queries, names, out_dir, garment, on_missing, quality)


def segformer_probes(model: Any, query_dir: Path | str, names: Sequence[str],
                     out_dir: Path | str, *, labels: Sequence[str], size: int,
                     on_missing: str = "skip", quality: int = DEFAULT_JPEG_QUALITY
                     ) -> dict[str, Any]:
    """The authors' default probe: the pixels a clothes segmenter labels as ``labels``.

    The mask is the union of those classes, kept as segmented (no contour filling); the
    record lists each image's garment pixel count per label.
    """
    queries = open_images(query_dir)
    if not names:
        raise WorkflowInputError(query_dir, "no query images to make clothes probes from")
    ids = label_ids(model, labels)

    def garment(name: str) -> tuple[dict[str, Any], np.ndarray | None, bool]:
        image = queries.read_rgb(name)
        classes = segment_labels(model, image, size)
        pixels = {label: int((classes == i).sum()) for label, i in zip(labels, ids, strict=True)}
        mask = np.isin(classes, ids)
        entry: dict[str, Any] = {"garment_pixels": pixels}
        return entry, masked_crop(image, mask), bool(mask.any())

    return write_probes(queries, names, out_dir, garment, on_missing, quality)


def run_clothes_probe(query_dir: Path | str, out_dir: Path | str, record_out: Path | str,
                      models_cfg: Mapping[str, Any], clothes_cfg: Mapping[str, Any],
                      detection_cfg: Mapping[str, Any], segmentation_cfg: Mapping[str, Any],
                      cache: Path | str, quality: int = DEFAULT_JPEG_QUALITY) -> dict[str, int]:
    """The clothes-probe rule of one person set: probe pack and garment record.

    ``clothes.method``: ``segformer`` (the authors' default, a clothes segmenter) or
    ``grounding_sam`` (GroundingDINO with garment prompts, then SAM on the best box).
    """
    if clothes_cfg["method"] == "segformer":
        model = load_segformer(models_cfg["segformer_clothes"], cache, device_for())
        record = segformer_probes(model, query_dir, image_names(open_images(query_dir)), out_dir,
                                  labels=clothes_cfg["segformer_labels"],
                                  size=clothes_cfg["segformer_size"],
                                  on_missing=clothes_cfg["on_missing"], quality=quality)
        write_json(record_out, record)
        return record["summary"]
    detector = load_detector(models_cfg, cache, clothes_cfg["prompts"],
                             clothes_cfg["box_threshold"], clothes_cfg["text_threshold"],
                             detection_cfg["image_size"], detection_cfg["max_image_size"])
    record = clothes_probes(
        detector, load_sam(models_cfg, cache), query_dir, image_names(open_images(query_dir)),
        out_dir,
        mask_threshold=segmentation_cfg["mask_threshold"], multimask=segmentation_cfg["multimask"],
        on_missing=clothes_cfg["on_missing"], batch_size=detection_cfg["batch_size"],
        quality=quality)
    write_json(record_out, record)
    return record["summary"]

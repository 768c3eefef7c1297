"""CUHK03-NP and Market-1501 query / gallery images masked with the MGCAM person masks.

``query/`` becomes ``foreground_query.zip`` and ``bounding_box_test/`` becomes
``foregroundImages_cropped.zip`` (packs, overlearning/core/packs.py; unzipped they are the
study's folders of the same names): every pixel outside the person mask is set to black, the
image keeps its size and its file stem (identity before the first ``_``, camera after
``_c``), and is saved with the configured extension. MGCAM ships each folder's masks in a
sibling ``<folder>_seg/`` with the same stems.

Market-1501 labels some gallery images ``-1`` (junk: bad detections, ignored by its
protocol) and ``0000`` (distractors: background boxes the protocol keeps in the gallery).
Each group is dropped or kept by configuration; CUHK03-NP has neither label.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import DEFAULT_JPEG_QUALITY, encode_image, mask_from_bytes
from overlearning.core.names import MASK_FOLDER_SUFFIX, PERSON_FOLDERS
from overlearning.core.packs import (
    ImageSource,
    PackWriter,
    check_image,
    image_names,
    open_images,
    pack_path,
    write_pack,
)
from overlearning.core.parallel import ordered_parallel_map

log = logging.getLogger(__name__)

# Output folder (the study's names) -> the dataset's folder it is made from.
JUNK_LABEL = "-1"
DISTRACTOR_LABEL = "0000"

Policy = Literal["drop", "keep"]
Naming = Literal["cuhk03", "market1501", "any"]
# The official file stems (docs/datasets.md). CUHK03-NP: identity, camera 1 or 2, image
# number; Market-1501: identity (-1 junk, 0000 distractor), camera 1-6 and sequence, frame,
# box number. Labels and cameras are parsed from these names downstream, so a name of
# another shape would give a wrong label or camera rather than an error later.
NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    "cuhk03": re.compile(r"(?P<id>\d{4})_c(?P<camera>[12])_(?P<n>\d+)"),
    "market1501": re.compile(
        r"(?P<id>-1|\d{4})_c(?P<camera>[1-6])s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})"),
}
NAME_FORMS = {"cuhk03": "<id:4 digits>_c<1|2>_<n>",
              "market1501": "<id:4 digits|-1>_c<1-6>s<seq>_<frame:6 digits>_<box:2 digits>"}


def check_person_names(files: list[str], naming: Naming, folder: Path) -> None:
    """Every file stem follows the dataset's official pattern (``any``: either one)."""
    patterns = list(NAME_PATTERNS.items()) if naming == "any" else [
        (naming, NAME_PATTERNS[naming])]
    for name in files:
        stem = PurePosixPath(name).stem
        if not any(pattern.fullmatch(stem) for _, pattern in patterns):
            forms = " or ".join(f"{NAME_FORMS[n]} ({n})" for n, _ in patterns)
            raise WorkflowInputError(folder, f"{name}: expected a file name {forms}, "
                                             f"found {stem!r}")


def label_group(name: str) -> str:
    """'junk', 'distractor' or 'person', from the identity before the first '_'."""
    identity = name.split("_", 1)[0]
    if identity == JUNK_LABEL:
        return "junk"
    if identity.isdigit() and int(identity) == 0:
        return "distractor"
    return "person"


def select_images(files: list[str], junk: Policy, distractors: Policy) -> tuple[list[str], dict[str, int]]:
    """Apply the junk / distractor policy; return the kept names and the counts per group."""
    drop = {group for group, policy in (("junk", junk), ("distractor", distractors))
            if policy == "drop"}
    counts = {"person": 0, "junk": 0, "distractor": 0}
    kept = []
    for name in files:
        group = label_group(PurePosixPath(name).name)
        counts[group] += 1
        if group not in drop:
            kept.append(name)
    return kept, counts


def mask_person(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Black background: the image times its 0/1 person mask."""
    return pixels * mask[..., None].astype(pixels.dtype)


def _mask_index(masks: ImageSource) -> dict[str, str]:
    index: dict[str, str] = {}
    for name in image_names(masks):
        # A .png mask wins over any other file with the same stem (MGCAM ships PNGs).
        path = PurePosixPath(name)
        if path.stem not in index or path.suffix.lower() == ".png":
            index[path.stem] = name
    return index


def mask_folder(image_dir: Path | str, mask_dir: Path | str, out: PackWriter, *, ext: str,
                quality: int = DEFAULT_JPEG_QUALITY, threads: int = 1, junk: Policy = "drop",
                distractors: Policy = "keep", naming: Naming = "any") -> dict[str, int]:
    """Mask every selected image of ``image_dir`` into the pack ``out`` is writing.

    ``image_dir`` and ``mask_dir`` are folders, or folders inside downloads read in place.
    """
    images = open_images(image_dir)
    image_dir = Path(image_dir)
    files = image_names(images)
    if not files:
        raise WorkflowInputError(image_dir, "no images in folder")
    check_person_names(files, naming, image_dir)
    kept, counts = select_images(files, junk, distractors)
    if not kept:
        raise WorkflowInputError(image_dir, f"expected at least one image to keep, found "
                                            f"{len(files)} all dropped (junk {junk}, "
                                            f"distractors {distractors})")
    try:
        masks = open_images(mask_dir)
    except WorkflowInputError:
        raise WorkflowInputError(mask_dir, "MGCAM mask folder not found") from None
    mask_of = _mask_index(masks)
    names: dict[str, str] = {}
    for name in kept:
        # A link in the folder must not lead the rule to read files outside it.
        check_image(images, name, image_dir, "image")
        stem = PurePosixPath(name).stem
        if stem not in mask_of:
            raise WorkflowInputError(images.where(name),
                                     f"no MGCAM mask {Path(mask_dir)}/{stem}.png")
        check_image(masks, mask_of[stem], mask_dir, "mask")
        out_name = f"{stem}.{ext}"
        if out_name in names:
            raise WorkflowInputError(images.where(name), f"same output name as "
                                                         f"{images.where(names[out_name])}")
        names[out_name] = name

    def apply(name: str) -> bytes:
        pixels = images.read_rgb(name)
        mask_name = mask_of[PurePosixPath(name).stem]
        mask = mask_from_bytes(masks.read_bytes(mask_name), masks.where(mask_name))
        if mask.shape != pixels.shape[:2]:
            raise WorkflowInputError(
                masks.where(mask_name), f"mask is {mask.shape[0]}x{mask.shape[1]} but the "
                                        f"image {name} is {pixels.shape[0]}x{pixels.shape[1]}")
        return encode_image(mask_person(pixels, mask), f".{ext}", quality)

    # Members in the folder's name order, whatever the thread count.
    results = ordered_parallel_map(apply, kept, threads, len(kept), f"mask {image_dir.name}")
    for name, data in zip(kept, results, strict=True):
        out.add(f"{PurePosixPath(name).stem}.{ext}", data)
    stats = {"images": len(files), "written": len(kept), **counts,
             "dropped": len(files) - len(kept)}
    log.info("%s: %d images written; %d persons, %d junk (-1, %s), %d distractors "
             "(0000, %s)", image_dir, len(kept), counts["person"], counts["junk"],
             junk, counts["distractor"], distractors)
    return stats


def prepare_person_set(images_root: Path | str, masks_root: Path | str, out_root: Path | str,
                       *, ext: str = "jpg", quality: int = DEFAULT_JPEG_QUALITY, threads: int = 1,
                       junk: Policy = "drop", distractors: Policy = "keep",
                       naming: Naming = "any") -> dict[str, dict[str, int]]:
    """Write ``out_root/foreground_query.zip`` and ``out_root/foregroundImages_cropped.zip``.

    ``images_root`` holds ``query/`` and ``bounding_box_test/``; ``masks_root`` holds
    ``query_seg/`` and ``bounding_box_test_seg/``.
    """
    images_root, masks_root, out_root = Path(images_root), Path(masks_root), Path(out_root)
    stats = {}
    # Both packs are built beside their final place and moved in only when both succeed.
    with write_pack(pack_path(out_root / "foreground_query")) as query_tmp, \
            write_pack(pack_path(out_root / "foregroundImages_cropped")) as gallery_tmp:
        for out_name, tmp in (("foreground_query", query_tmp),
                              ("foregroundImages_cropped", gallery_tmp)):
            source = PERSON_FOLDERS[out_name]
            stats[out_name] = mask_folder(
                images_root / source, masks_root / f"{source}{MASK_FOLDER_SUFFIX}", tmp,
                ext=ext, quality=quality, threads=threads, junk=junk, distractors=distractors,
                naming=naming)
    return stats

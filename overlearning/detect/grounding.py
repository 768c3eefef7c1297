"""Open-vocabulary detection with GroundingDINO: images in, ``{image: [detections]}`` out.

One caption holds every prompt (``"an airplane . a bear . ... ."``). A query is kept when its
best token probability exceeds the box threshold; its label is the text of the prompt tokens
whose probability exceeds the text threshold (special tokens and the "." separators never
count), as GroundingDINO's and Hugging Face's post-processing do. Boxes are in pixels of the
original image, ``[x1, y1, x2, y2]`` rounded to 2 decimals, confidences to 3 (the authors'
format).

Batching (``detection.batching``): ``same_size`` batches only images of one size, so no
padding enters the backbone and an image's detections do not depend on which images share
its batch or shard (the demo). ``padded`` batches images of any size, as the authors did
(batch 8): GroundingDINO's NestedTensor carries a padding mask (position encodings and
deformable attention use the valid region, boxes come out relative to each image), but
the Swin backbone's windows still see the zero padding, so an image's confidences and
boxes move slightly with its batch neighbours (docs/performance.md states the tolerance
the tests hold it to). Names are sorted by size before batching so padding stays small.

Precision (``detection.precision``, CUDA only; a CPU runs fp32): see
overlearning.core.precision.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import (
    ImageSource,
    check_image,
    image_header_size,
    image_names,
    open_images,
)
from overlearning.core.paths import check_relative
from overlearning.core.precision import precision_context, precision_for
from overlearning.detect.detection_files import (
    Detections,
    read_json,
    validate_detections,
    write_json,
)
from overlearning.models.detectors import load_grounding_dino

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
BATCHING = ("same_size", "padded")


def caption_for(prompts: Sequence[str]) -> str:
    """GroundingDINO's caption convention: lower case, prompts separated by " . "."""
    cleaned = [p.strip().lower().rstrip(".").strip() for p in prompts]
    if not cleaned or any(not p for p in cleaned):
        raise WorkflowInputError("prompts", f"empty prompt in {list(prompts)!r}")
    return " . ".join(cleaned) + " ."


def vis_frame_names(instances_json: Path | str) -> list[str]:
    """Frames of a frame-level split file (``images[].file_name``), sorted and unique."""
    data = read_json(instances_json)
    try:
        names = sorted({image["file_name"] for image in data["images"]})
    except (KeyError, TypeError) as exc:
        raise WorkflowInputError(instances_json, f"no images[].file_name ({exc})") from exc
    for name in names:
        check_relative(name, instances_json, f"images[].file_name {name!r}")
    return names


def shard_names(names: Sequence[str], shard: int, shards: int) -> list[str]:
    """Contiguous slice ``shard`` (0-based) of ``shards`` near-equal slices of ``names``."""
    if shards < 1 or not 0 <= shard < shards:
        raise WorkflowInputError("detection.shards", f"shard {shard} of {shards} does not exist")
    n = len(names)
    return list(names[shard * n // shards:(shard + 1) * n // shards])


def open_rgb(images: ImageSource, name: str) -> Any:
    """A PIL RGB image of one image of a folder or pack (errors name it)."""
    from PIL import Image

    return Image.fromarray(images.read_rgb(name))


@dataclass
class GroundingDetector:
    """A loaded GroundingDINO with its caption, thresholds and input size."""

    model: Any
    prompts: Sequence[str]
    box_threshold: float
    text_threshold: float
    image_size: int = 800
    max_image_size: int = 1333
    batching: str = "same_size"
    precision: str = "fp32"  # applied as given; load_detector picks it per device

    def __post_init__(self) -> None:
        import groundingdino.datasets.transforms as T
        import torch

        if self.batching not in BATCHING:
            raise WorkflowInputError("detection.batching",
                                     f"must be one of {BATCHING}, got {self.batching!r}")
        self.caption = caption_for(self.prompts)
        tokenizer = self.model.tokenizer
        tokenized = tokenizer(self.caption)
        self.input_ids: list[int] = list(tokenized["input_ids"])
        if len(self.input_ids) > self.model.max_text_len:
            raise WorkflowInputError("prompts", f"caption has {len(self.input_ids)} tokens; "
                                                f"GroundingDINO reads at most {self.model.max_text_len}")
        if tokenizer.unk_token_id in self.input_ids:
            raise WorkflowInputError("prompts", "a prompt word is unknown to the text encoder's "
                                                "vocabulary (rebuild the weights cache)")
        ignored = set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(["."]))
        self.word_tokens = torch.tensor([t not in ignored for t in self.input_ids])
        self.transform = T.Compose([
            T.RandomResize([self.image_size], max_size=self.max_image_size),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ])

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def _label(self, probs: Any) -> str:
        chosen = (probs[: len(self.input_ids)] > self.text_threshold) & self.word_tokens
        ids = [self.input_ids[i] for i in chosen.nonzero().flatten().tolist()]
        return self.model.tokenizer.decode(ids).strip()

    def detect(self, images: Sequence[Any]) -> list[list[dict[str, Any]]]:
        """Detections for a batch of PIL RGB images, in the authors' format (one size
        unless ``batching`` is ``padded``)."""
        import torch
        from groundingdino.util.misc import nested_tensor_from_tensor_list

        sizes = {image.size for image in images}
        if len(sizes) != 1 and self.batching != "padded":
            raise ValueError(f"a batch must hold images of one size, got {sorted(sizes)}")
        tensors = [self.transform(image, None)[0] for image in images]
        batch = nested_tensor_from_tensor_list(tensors).to(self.device)
        with torch.no_grad(), precision_context(self.device, self.precision):
            out = self.model(batch, captions=[self.caption] * len(images))
        probs = out["pred_logits"].float().sigmoid().cpu()
        boxes = out["pred_boxes"].float().cpu()
        results = []
        for image, p, b in zip(images, probs, boxes, strict=True):
            # Boxes are relative to each image's own (unpadded) extent.
            width, height = image.size
            scale = torch.tensor([width, height, width, height], dtype=torch.float32)
            best = p.max(dim=1).values
            keep = (best > self.box_threshold).nonzero().flatten().tolist()
            # Highest confidence first; equal confidences keep query order (stable sort).
            keep.sort(key=lambda q: -float(best[q]))
            cx, cy, w, h = b.unbind(-1)
            xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * scale
            results.append([
                {"label": self._label(p[q]), "confidence": round(float(best[q]), 3),
                 "box": [round(float(v), 2) for v in xyxy[q]]}
                for q in keep
            ])
        return results


def size_batches(root: Path | str | ImageSource, names: Sequence[str], batch_size: int,
                 batching: str = "same_size") -> list[list[str]]:
    """Batches of at most ``batch_size`` names, in (size, name) order; with ``same_size``
    a batch's images share one size, with ``padded`` only the batch size splits them."""
    images = open_images(root)
    for name in names:
        check_image(images, name, images.path, f"image {name!r}")
    sizes = {name: image_header_size(images, name) for name in names}
    batches: list[list[str]] = []
    last: tuple[int, int] | None = None
    for name in sorted(names, key=lambda n: (sizes[n], n)):
        new_size = sizes[name] != last and batching != "padded"
        if not batches or new_size or len(batches[-1]) >= batch_size:
            batches.append([])
        batches[-1].append(name)
        last = sizes[name]
    return batches


def detect_images(detector: GroundingDetector, root: Path | str | ImageSource,
                  names: Sequence[str],
                  batch_size: int, desc: str = "detect") -> Detections:
    """Detect in every named image of ``root`` (a folder or a pack); every name gets a
    (possibly empty) list."""
    from tqdm import tqdm

    source = open_images(root)
    results: Detections = {}
    progress = tqdm(total=len(names), desc=desc, unit="img", file=sys.stderr)
    for batch in size_batches(source, names, batch_size, detector.batching):
        images = [open_rgb(source, name) for name in batch]
        for name, dets in zip(batch, detector.detect(images), strict=True):
            results[name] = dets
        progress.update(len(batch))
    progress.close()
    return dict(sorted(results.items()))


def gather_shards(shard_paths: Sequence[Path | str], expected: Sequence[str]) -> Detections:
    """Merge shard files; they must be disjoint and together cover exactly ``expected``."""
    merged: Detections = {}
    for path in shard_paths:
        part = validate_detections(read_json(path), path)
        overlap = sorted(set(part) & set(merged))
        if overlap:
            raise WorkflowInputError(path, f"image {overlap[0]} is in more than one shard")
        merged.update(part)
    missing = sorted(set(expected) - set(merged))
    extra = sorted(set(merged) - set(expected))
    if missing or extra:
        raise WorkflowInputError(shard_paths[0] if shard_paths else "shards",
                                 f"shards do not cover the image list: {len(missing)} missing "
                                 f"(e.g. {missing[:1]}), {len(extra)} unknown (e.g. {extra[:1]})")
    return dict(sorted(merged.items()))


def detection_summary(detections: Mapping[str, list], person_label: str) -> dict[str, int]:
    n_det = sum(len(d) for d in detections.values())
    persons = sum(person_label in det["label"].lower() for d in detections.values() for det in d)
    return {"images": len(detections), "detections": n_det, "person_detections": persons,
            "images_without_detection": sum(not d for d in detections.values())}


def set_image_names(source: Path | str) -> list[str]:
    """A detection set's images: a frame-level instances file (VIS) or an image pack/folder."""
    source = Path(source)
    if source.suffix.lower() == ".json":
        return vis_frame_names(source)
    return image_names(open_images(source))


def load_detector(models_cfg: Mapping[str, Any], cache: Path | str, prompts: Sequence[str],
                  box_threshold: float, text_threshold: float, image_size: int = 800,
                  max_image_size: int = 1333, batching: str = "same_size",
                  precision: str = "fp32") -> GroundingDetector:
    """GroundingDINO from the weights cache, ready to detect ``prompts``; ``precision`` is
    the configured one, used on CUDA only (a CPU runs fp32)."""
    model = load_grounding_dino(models_cfg, cache)
    device = next(model.parameters()).device
    return GroundingDetector(model, prompts, box_threshold, text_threshold, image_size,
                             max_image_size, batching, precision_for(device, precision))


def run_detect_shard(images_from: Path | str, image_root: Path | str,
                     models_cfg: Mapping[str, Any], detection_cfg: Mapping[str, Any],
                     cache: Path | str, shard: int, shards: int, out: Path | str) -> dict[str, int]:
    """The ``detect_shard`` rule: detect in shard ``shard`` of the set's sorted image list."""
    names = shard_names(set_image_names(images_from), shard, shards)
    detector = load_detector(models_cfg, cache, detection_cfg["prompts"],
                             detection_cfg["box_threshold"], detection_cfg["text_threshold"],
                             detection_cfg["image_size"], detection_cfg["max_image_size"],
                             detection_cfg.get("batching", "same_size"),
                             detection_cfg.get("precision", "fp32"))
    detections = detect_images(detector, image_root, names, detection_cfg["batch_size"],
                               desc=f"detect shard {shard}/{shards}")
    write_json(out, detections)
    return detection_summary(detections, detection_cfg["person_label"])


def run_gather(shard_paths: Sequence[Path | str], images_from: Path | str, out: Path | str,
               person_label: str) -> dict[str, int]:
    """The ``gather_detections`` rule: one detection file for the whole set."""
    detections = gather_shards(shard_paths, set_image_names(images_from))
    write_json(out, detections)
    return detection_summary(detections, person_label)

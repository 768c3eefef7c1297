"""The authors' clothes segmenter: SegFormer-B2 fine-tuned on ATR human parsing.

The published model (``mattmdjaga/segformer_b2_clothes`` on the Hugging Face hub) labels every
pixel with one of 18 ATR classes; the clothes probe keeps ``Upper-clothes`` and ``Dress``, as
the authors' default probe did. The cache holds, relative to its root:

- ``segformer_clothes/model.safetensors``: the model's state;
- ``segformer_clothes/config.json``: its transformers configuration (labels included);
- ``segformer_clothes/build.json``: what it was built for (name, revision, overrides).

The published ``config.json`` and ``model.safetensors`` come through the weights bundle
(overlearning.models.bundle) like every other pretrained file, checked against the published
format. ``source: random`` writes a seeded random model of the same architecture
(``overrides`` make it tiny in the demo) with the published label set, so every path loads
the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from overlearning.core.errors import WorkflowInputError
from overlearning.core.seeding import seed_everything
from overlearning.models.cache import go_offline, load_state_dict, require_weights, save_state_dict
from overlearning.models.official import FORMATS, load_official

DIR = "segformer_clothes"
WEIGHTS = f"{DIR}/model.safetensors"
CONFIG = f"{DIR}/config.json"
BUILD = f"{DIR}/build.json"
# ATR labels of the published model (its config.json id2label).
ATR_LABELS = ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants",
              "Dress", "Belt", "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg",
              "Left-arm", "Right-arm", "Bag", "Scarf")
# SegFormer-B2 (MiT-b2 encoder) as SegformerConfig fields.
MIT_B2: dict[str, Any] = {"depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 320, 512],
                          "num_attention_heads": [1, 2, 5, 8], "decoder_hidden_size": 768}


def build_segformer(model_cfg: Mapping[str, Any]) -> SegformerForSemanticSegmentation:
    """A randomly initialised SegFormer-B2 with the ATR labels (``overrides`` applied)."""
    fields = {**MIT_B2, **dict(model_cfg.get("overrides") or {})}
    config = SegformerConfig(num_labels=len(ATR_LABELS),
                             id2label=dict(enumerate(ATR_LABELS)),
                             label2id={name: i for i, name in enumerate(ATR_LABELS)}, **fields)
    return SegformerForSemanticSegmentation(config)


def _record(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": "segformer_clothes", "name": model_cfg["name"],
            "revision": model_cfg.get("revision"),
            "overrides": dict(model_cfg.get("overrides") or {})}


def _check_published_config(path: Path, model: SegformerForSemanticSegmentation) -> None:
    """The bundle's config.json describes the architecture and labels we build, or we stop."""
    try:
        published = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WorkflowInputError(path, f"unreadable SegFormer configuration ({exc})") from None
    labels = {int(k): v for k, v in dict(published.get("id2label") or {}).items()}
    if labels != dict(enumerate(ATR_LABELS)):
        differ = sorted(set(labels.items()) ^ set(enumerate(ATR_LABELS)))
        raise WorkflowInputError(path, f"id2label is not the ATR label set (first difference "
                                       f"{differ[0] if differ else labels})")
    for key in (*MIT_B2, "num_encoder_blocks"):
        if key in published and published[key] != getattr(model.config, key):
            raise WorkflowInputError(path, f"{key} is {published[key]}, the configured "
                                           f"architecture has {getattr(model.config, key)}")


def write_segformer(folder: Path, model_cfg: Mapping[str, Any], source: str, seed: int,
                    bundle: Path | None = None) -> None:
    """The clothes segmenter's cache folder (``model.safetensors``, ``config.json``,
    ``build.json``) in the empty ``folder``.

    ``source`` "files" reads the published ``config.json`` and ``model.safetensors`` from the
    weights ``bundle`` (``<name>/``) and checks them against the published format; "random"
    writes a seeded random model of the configured architecture.
    """
    seed_everything(seed)
    model = build_segformer(model_cfg)
    if source == "files":
        if bundle is None:
            raise WorkflowInputError("weights.files", "source files needs the bundle folder")
        published = Path(bundle) / model_cfg["name"]
        _check_published_config(published / "config.json", model)
        load_official(published / "model.safetensors", model, FORMATS["segformer"])
    elif source != "random":
        raise WorkflowInputError("weights.source", f"unknown source {source!r} (files or random)")
    save_state_dict(model.state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text(model.config.to_json_string(use_diff=False))
    record = {**_record(model_cfg), "source": source}
    (folder / "build.json").write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")


def load_segformer(model_cfg: Mapping[str, Any], cache: Path | str,
                   device: str = "cpu") -> SegformerForSemanticSegmentation:
    """The cached model in eval mode; its configuration comes from the cached config.json."""
    cache = Path(cache)
    go_offline(cache)
    require_weights(cache, [WEIGHTS, CONFIG, BUILD])
    try:
        recorded = json.loads((cache / BUILD).read_text())
    except ValueError as exc:
        raise WorkflowInputError(cache / BUILD, f"unreadable build record ({exc})") from exc
    wanted = _record(model_cfg)
    if {k: recorded.get(k) for k in wanted} != wanted:
        raise WorkflowInputError(cache / BUILD, f"cached clothes segmenter was built for "
                                 f"{recorded}, the config asks for {wanted}; rerun the weights rule")
    try:
        config = SegformerConfig.from_dict(json.loads((cache / CONFIG).read_text()))
    except ValueError as exc:
        raise WorkflowInputError(cache / CONFIG, f"unreadable SegFormer configuration ({exc})") from exc
    model = SegformerForSemanticSegmentation(config)
    result = model.load_state_dict(load_state_dict(cache / WEIGHTS), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WorkflowInputError(cache / WEIGHTS, "weights do not fit the cached configuration: "
                                 f"missing {result.missing_keys[:3]}, unexpected "
                                 f"{result.unexpected_keys[:3]}")
    return model.to(device).eval()


def label_ids(model: SegformerForSemanticSegmentation, names: Sequence[str]) -> list[int]:
    """The model's class ids of ``names`` (its own id2label), naming an unknown label."""
    by_name = {str(v): int(k) for k, v in model.config.id2label.items()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise WorkflowInputError("clothes.segformer_labels",
                                 f"{missing} not among the model's labels {sorted(by_name)}")
    return [by_name[n] for n in names]


MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@torch.no_grad()
def segment_labels(model: SegformerForSemanticSegmentation, image: np.ndarray,
                   size: int) -> np.ndarray:
    """H x W class ids: resize to ``size`` (bilinear), ImageNet-normalise, logits upsampled
    (bilinear) back to the image and argmax, as the model card's usage does."""
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR),
                         dtype=np.float32) / 255.0
    pixels = torch.from_numpy(((resized - MEAN) / STD).transpose(2, 0, 1))[None]
    device = next(model.parameters()).device
    logits = model(pixel_values=pixels.to(device)).logits
    logits = torch.nn.functional.interpolate(logits.float(), size=image.shape[:2],
                                             mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)[0].cpu().numpy()

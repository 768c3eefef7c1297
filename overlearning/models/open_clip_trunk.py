"""open_clip image towers as trunks: the pretrained baselines of the main table.

A baseline embeds with a CLIP image tower exactly as published (its own projection, no
fine-tuning, no embedder), so the table can show how well people are re-identified before any
training on YouTube-VIS. The tower is built from open_clip's packaged model configuration
(``open_clip.get_model_config``) and the tag's pretrained configuration (activation,
mean/std, interpolation), both shipped inside the package: nothing is downloaded here.
``overrides`` replace vision-tower fields (``width``, ``layers``, ``image_size``, ...) and the
output size ``embed_dim``, which is how the demo and the tests build tiny towers; ``text_cfg``
in the overrides replaces text-tower fields, which only shape the published file (the text
tower is part of it, see :func:`text_tower_specs`) since the baseline embeds images only.

The published file is the whole CLIP model's state dict as open_clip saves it for the hub
(``open_clip_model.safetensors`` in the tag's ``hf_hub`` repo): the image tower under
``visual.``, the text tower and ``logit_scale`` at the top level.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import open_clip
import torch
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.model import CLIP, CLIPVisionCfg, _build_vision_tower
from torch import nn

from overlearning.core.errors import WorkflowInputError


def _configs(trunk_cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config with overrides applied, pretrained config of the tag)."""
    name, tag = trunk_cfg["name"], trunk_cfg.get("weights") or ""
    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None:
        raise WorkflowInputError(f"models: {name}", "unknown open_clip model name")
    pretrained = open_clip.get_pretrained_cfg(name, tag) if tag else {}
    if tag and not pretrained:
        raise WorkflowInputError(f"models: {name}", f"open_clip has no pretrained tag {tag!r}")
    overrides = dict(trunk_cfg.get("overrides") or {})
    vision = dict(model_cfg["vision_cfg"])
    text = {**model_cfg["text_cfg"], **dict(overrides.pop("text_cfg", None) or {})}
    embed_dim = int(overrides.pop("embed_dim", model_cfg["embed_dim"]))
    vision.update(overrides)
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": text,
            "quick_gelu": bool(model_cfg.get("quick_gelu") or pretrained.get("quick_gelu"))}, pretrained


def build_open_clip_tower(trunk_cfg: Mapping[str, Any]) -> nn.Module:
    """The randomly initialised image tower; ``forward`` gives (B, embed_dim) projections."""
    cfg, pretrained = _configs(trunk_cfg)
    try:
        tower = _build_vision_tower(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision_cfg"]),
                                    quick_gelu=cfg["quick_gelu"])
    except TypeError as exc:
        raise WorkflowInputError(f"models: {trunk_cfg['name']}",
                                 f"cannot build open_clip tower ({exc})") from exc
    # What the transforms need, kept on the module so a loaded tower carries it.
    tower.overlearning_preprocess = {
        "mean": tuple(pretrained.get("mean") or open_clip.OPENAI_DATASET_MEAN),
        "std": tuple(pretrained.get("std") or open_clip.OPENAI_DATASET_STD),
        "interpolation": pretrained.get("interpolation", "bicubic"),
        "resize_mode": pretrained.get("resize_mode", "shortest"),
    }
    tower.overlearning_embed_dim = cfg["embed_dim"]
    tower.overlearning_clip_cfg = cfg
    return tower


def is_open_clip_tower(module: nn.Module) -> bool:
    return hasattr(module, "overlearning_preprocess")


def tower_input_size(tower: nn.Module) -> tuple[int, int]:
    size = tower.image_size
    return (int(size[0]), int(size[1])) if isinstance(size, tuple | list) else (int(size), int(size))


def tower_transforms(tower: nn.Module) -> tuple[Any, Any]:
    """(train, eval) transforms as open_clip's own preprocessing for the tag."""
    pre = tower.overlearning_preprocess
    size = tower_input_size(tower)
    kwargs = {"mean": pre["mean"], "std": pre["std"], "interpolation": pre["interpolation"],
              "resize_mode": pre["resize_mode"]}
    return (open_clip.image_transform(size, is_train=True, **kwargs),
            open_clip.image_transform(size, is_train=False, **kwargs))


def text_tower_specs(tower: nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{key: (shape, dtype)} of what the published file holds besides the image tower.

    Read off open_clip's own CLIP class built on the meta device (no memory, no values): the
    text transformer, token and positional embeddings, final LayerNorm, text projection and
    ``logit_scale``; ``attn_mask`` is a non-persistent buffer and not saved.
    """
    cfg = tower.overlearning_clip_cfg
    with torch.device("meta"):
        clip = CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=cfg["quick_gelu"])
    return {k: (tuple(v.shape), v.dtype) for k, v in clip.state_dict().items()
            if not k.startswith("visual.")}


def hub_file(trunk_cfg: Mapping[str, Any]) -> tuple[str, str]:
    """(hub repo, file name) of the tag's published weights, as open_clip itself fetches them.

    open_clip takes the safetensors copy of the default ``open_clip_pytorch_model.bin`` where
    the repo has one; the bundle holds that copy.
    """
    _, pretrained = _configs(trunk_cfg)
    hub = pretrained.get("hf_hub") or ""
    # open_clip's own reading: "owner/repo/" or "owner/repo/file".
    repo, filename = posixpath.split(hub)
    if not repo or filename not in ("", HF_WEIGHTS_NAME):
        raise WorkflowInputError(f"models: {trunk_cfg['name']}",
                                 f"open_clip tag {trunk_cfg.get('weights')!r} is not published as "
                                 f"{HF_WEIGHTS_NAME} in a hub repo ({hub!r}); the weights bundle "
                                 "reads those only")
    return repo, HF_SAFE_WEIGHTS_NAME

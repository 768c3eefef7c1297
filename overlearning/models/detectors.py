"""GroundingDINO and SAM built from config (architecture + overrides) and loaded from the cache.

The weights cache (filled by ``overlearning.models.detector_weights``) holds, relative to its root:

- ``grounding_dino/model.safetensors``: the whole detector's state (its BERT included);
- ``grounding_dino/text_encoder/``: a BERT directory (``save_pretrained`` of the model and its
  tokenizer) that GroundingDINO reads as ``text_encoder_type``;
- ``grounding_dino/build.json``, ``sam/build.json``: the architecture the weights belong to;
- ``sam/model.safetensors``: SAM's state.

Loaders read only these files (checked against the cache's manifest), with the Hugging Face
hub switched off, so compute nodes never reach the network. Overrides are plain attributes
of GroundingDINO's config file (e.g. ``enc_layers``) and, for SAM, ``encoder_depth``, ``encoder_embed_dim``, ``encoder_num_heads``,
``encoder_global_attn_indexes`` and ``image_size`` (the encoder's input side, 1024 in SAM).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError
from overlearning.models.cache import go_offline, require_weights

GD_DIR = "grounding_dino"
GD_WEIGHTS = f"{GD_DIR}/model.safetensors"
GD_TEXT_ENCODER = f"{GD_DIR}/text_encoder"
GD_BUILD = f"{GD_DIR}/build.json"
SAM_DIR = "sam"
SAM_WEIGHTS = f"{SAM_DIR}/model.safetensors"
SAM_BUILD = f"{SAM_DIR}/build.json"

# Published SAM image-encoder sizes (segment_anything.build_sam).
SAM_VARIANTS: dict[str, dict[str, Any]] = {
    "vit_b": {"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12,
              "encoder_global_attn_indexes": [2, 5, 8, 11]},
    "vit_l": {"encoder_embed_dim": 1024, "encoder_depth": 24, "encoder_num_heads": 16,
              "encoder_global_attn_indexes": [5, 11, 17, 23]},
    "vit_h": {"encoder_embed_dim": 1280, "encoder_depth": 32, "encoder_num_heads": 16,
              "encoder_global_attn_indexes": [7, 15, 23, 31]},
}
SAM_OVERRIDE_KEYS = {"encoder_embed_dim", "encoder_depth", "encoder_num_heads",
                     "encoder_global_attn_indexes", "image_size"}

# Gradient checkpointing only saves memory in training; it changes no weight.
_INFERENCE_SETTINGS = {"use_checkpoint": False, "use_transformer_ckpt": False}


def build_record(kind: str, model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What a cached checkpoint was built for; the loader refuses a cache made for another."""
    if kind == "grounding_dino":
        return {"config": model_cfg["config"], "text_encoder": model_cfg["text_encoder"],
                "overrides": dict(model_cfg.get("overrides") or {})}
    return {"variant": model_cfg["variant"], "overrides": dict(model_cfg.get("overrides") or {})}


def check_build(cache: Path, rel: str, kind: str, model_cfg: Mapping[str, Any]) -> None:
    path = Path(cache) / rel
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WorkflowInputError(path, f"unreadable weights build record ({exc}); "
                                       "rerun the weights rule") from exc
    wanted = build_record(kind, model_cfg)
    if not isinstance(recorded, dict) or {k: recorded.get(k) for k in wanted} != wanted:
        raise WorkflowInputError(path, f"cached {kind} weights were built for {recorded}, "
                                       f"config asks for {wanted}; rerun the weights rule")


def grounding_dino_args(model_cfg: Mapping[str, Any], text_encoder_dir: Path) -> Any:
    """GroundingDINO's own config file for ``model_cfg['config']`` with the overrides applied."""
    import groundingdino
    from groundingdino.util.slconfig import SLConfig

    config_file = Path(groundingdino.__file__).parent / "config" / f"{model_cfg['config']}.py"
    if not config_file.is_file():
        raise WorkflowInputError("models.grounding_dino.config",
                                 f"no GroundingDINO config named {model_cfg['config']!r}")
    args = SLConfig.fromfile(str(config_file))
    for key, value in dict(model_cfg.get("overrides") or {}).items():
        if key not in args._cfg_dict:
            raise WorkflowInputError("models.grounding_dino.overrides",
                                     f"unknown GroundingDINO setting {key!r}")
        setattr(args, key, value)
    for key, value in _INFERENCE_SETTINGS.items():
        setattr(args, key, value)
    args.text_encoder_type = str(Path(text_encoder_dir).resolve())
    return args


def build_grounding_dino(model_cfg: Mapping[str, Any], text_encoder_dir: Path) -> Any:
    """The detector architecture (weights as initialised: random, BERT from the directory)."""
    from groundingdino.models import build_model

    args = grounding_dino_args(model_cfg, text_encoder_dir)
    # The package prints the text encoder path on stdout; scripts keep stdout for results.
    with contextlib.redirect_stdout(io.StringIO()):
        model = build_model(args)
    return model.eval()


def build_sam(model_cfg: Mapping[str, Any]) -> Any:
    """SAM from segment_anything's modeling classes, as build_sam does, with overrides."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    variant = model_cfg["variant"]
    if variant not in SAM_VARIANTS:
        raise WorkflowInputError("models.sam.variant", f"unknown SAM variant {variant!r}")
    overrides = dict(model_cfg.get("overrides") or {})
    unknown = sorted(set(overrides) - SAM_OVERRIDE_KEYS)
    if unknown:
        raise WorkflowInputError("models.sam.overrides", f"unknown SAM setting(s) {unknown}")
    spec = {**SAM_VARIANTS[variant], "image_size": 1024, **overrides}
    image_size = int(spec["image_size"])
    if image_size % 16:
        raise WorkflowInputError("models.sam.overrides.image_size", "must be a multiple of 16")
    prompt_dim = 256
    grid = image_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=spec["encoder_depth"], embed_dim=spec["encoder_embed_dim"],
            img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=spec["encoder_num_heads"], patch_size=16, qkv_bias=True,
            use_rel_pos=True, global_attn_indexes=list(spec["encoder_global_attn_indexes"]),
            window_size=14, out_chans=prompt_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2048,
                                          num_heads=8),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def _read_state(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise WorkflowInputError(path, "weights file missing; run the weights rule first")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise WorkflowInputError(path, f"unreadable safetensors file ({exc})") from exc


def _load_state(model: Any, state: dict[str, Any], path: Path) -> None:
    # The cache holds exactly the architecture's keys: the weights rule dropped the
    # published files' extra keys after checking them (overlearning.models.official).
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WorkflowInputError(
            path, f"weights do not fit the configured architecture: missing "
                  f"{result.missing_keys[:5]}..., unexpected {result.unexpected_keys[:5]}...")


def load_grounding_dino(models_cfg: Mapping[str, Any], cache: Path | str,
                        device: Any = "cpu") -> Any:
    """The detector with cached weights, in eval mode on ``device`` (a rule's job passes
    the one its device guard returned, overlearning.core.device)."""
    cache = Path(cache)
    go_offline(cache)
    require_weights(cache, [GD_WEIGHTS, GD_BUILD, f"{GD_TEXT_ENCODER}/config.json"])
    model_cfg = models_cfg["grounding_dino"]
    check_build(cache, GD_BUILD, "grounding_dino", model_cfg)
    text_dir = cache / GD_TEXT_ENCODER
    if not (text_dir / "config.json").is_file():
        raise WorkflowInputError(text_dir, "text encoder directory missing; run the weights rule")
    model = build_grounding_dino(model_cfg, text_dir)
    _load_state(model, _read_state(cache / GD_WEIGHTS), cache / GD_WEIGHTS)
    return model.to(device).eval()


def load_sam(models_cfg: Mapping[str, Any], cache: Path | str, device: Any = "cpu") -> Any:
    """SAM with cached weights, in eval mode on ``device`` (as load_grounding_dino)."""
    cache = Path(cache)
    go_offline(cache)
    require_weights(cache, [SAM_WEIGHTS, SAM_BUILD])
    model_cfg = models_cfg["sam"]
    check_build(cache, SAM_BUILD, "sam", model_cfg)
    model = build_sam(model_cfg)
    _load_state(model, _read_state(cache / SAM_WEIGHTS), cache / SAM_WEIGHTS)
    return model.to(device).eval()

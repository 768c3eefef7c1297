"""The embedding model of the study: a ViT trunk and a linear embedder, with its transforms.

Trunk: timm ``vit_base_patch16_clip_384.laion2b_ft_in12k_in1k`` (classifier removed), or
torchvision's ``vit_b_16`` for the AttnLRP twins. Embedder: ``Linear(trunk features,
embedding_dim)``. Architectures are always built randomly initialised (nothing is ever
downloaded here); pretrained or trained weights are then loaded from safetensors files.
A config's ``overrides`` shrink the architecture (demo, tests); the input size is read from
the built model, never from the pretrained configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from overlearning.core.errors import WorkflowInputError
from overlearning.models.cache import cached_trunk_state, load_state_dict, save_state_dict
from overlearning.models.open_clip_trunk import (
    build_open_clip_tower,
    is_open_clip_tower,
    tower_input_size,
    tower_transforms,
)

TRUNK_FILE = "trunk.safetensors"
EMBEDDER_FILE = "embedder.safetensors"

# torchvision's ViT builders fix these; overrides may replace any of them.
TORCHVISION_VITS: dict[str, dict[str, int]] = {
    "vit_b_16": {"patch_size": 16, "num_layers": 12, "num_heads": 12, "hidden_dim": 768,
                 "mlp_dim": 3072},
    "vit_b_32": {"patch_size": 32, "num_layers": 12, "num_heads": 12, "hidden_dim": 768,
                 "mlp_dim": 3072},
    "vit_l_16": {"patch_size": 16, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024,
                 "mlp_dim": 4096},
    "vit_l_32": {"patch_size": 32, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024,
                 "mlp_dim": 4096},
    "vit_h_14": {"patch_size": 14, "num_layers": 32, "num_heads": 16, "hidden_dim": 1280,
                 "mlp_dim": 5120},
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Transform = Callable[[Any], torch.Tensor]


def torchvision_weights(trunk_cfg: Mapping[str, Any]) -> Any:
    """The torchvision weights enum entry named in the config (metadata only, no download)."""
    name = trunk_cfg.get("weights")
    if not name:
        return None
    try:
        return torchvision.models.get_model_weights(trunk_cfg["name"])[name]
    except (KeyError, ValueError):
        raise WorkflowInputError(f"models: {trunk_cfg['name']}",
                                 f"unknown torchvision weights {name!r}") from None


def build_trunk(trunk_cfg: Mapping[str, Any]) -> nn.Module:
    """A randomly initialised trunk that returns (B, features) pooled features."""
    overrides = dict(trunk_cfg.get("overrides") or {})
    name = trunk_cfg["name"]
    if trunk_cfg["kind"] == "timm":
        try:
            return timm.create_model(name, pretrained=False, num_classes=0, **overrides)
        except (RuntimeError, TypeError) as exc:
            raise WorkflowInputError(f"models: {name}", f"cannot build timm model ({exc})") from exc
    if trunk_cfg["kind"] == "torchvision":
        if name not in TORCHVISION_VITS:
            raise WorkflowInputError(f"models: {name}",
                                     f"unsupported torchvision ViT (known: {sorted(TORCHVISION_VITS)})")
        kwargs: dict[str, Any] = dict(TORCHVISION_VITS[name])
        weights = torchvision_weights(trunk_cfg)
        # The pretrained weights fix the input size (384 for SWAG E2E), as torchvision's
        # builder does; an override wins (tiny demo models).
        kwargs["image_size"] = weights.meta["min_size"][0] if weights is not None else 224
        kwargs.update(overrides)
        model = torchvision.models.VisionTransformer(**kwargs)
        model.heads = nn.Identity()
        return model
    if trunk_cfg["kind"] == "open_clip":
        return build_open_clip_tower(trunk_cfg)
    raise WorkflowInputError(f"models: {name}", f"unknown trunk kind {trunk_cfg['kind']!r}")


def trunk_features(trunk: nn.Module) -> int:
    if isinstance(trunk, torchvision.models.VisionTransformer):
        return trunk.hidden_dim
    if is_open_clip_tower(trunk):
        return int(trunk.output_dim)
    return int(trunk.num_features)


def trunk_input_size(trunk: nn.Module) -> tuple[int, int]:
    """(height, width) the built trunk expects."""
    if isinstance(trunk, torchvision.models.VisionTransformer):
        return (trunk.image_size, trunk.image_size)
    if is_open_clip_tower(trunk):
        return tower_input_size(trunk)
    height, width = trunk.patch_embed.img_size
    return (int(height), int(width))


def trunk_transforms(trunk: nn.Module) -> tuple[Transform, Transform]:
    """(train, eval) transforms from PIL images to normalised tensors.

    timm trunks use timm's own transforms for the model (mean/std, interpolation and crop
    mode from its pretrained configuration, size from the built model). torchvision twins
    use the SWAG preset for evaluation (bicubic resize and centre crop, ImageNet statistics)
    and a mild random-resized crop with flips for training, as the study did.
    """
    if is_open_clip_tower(trunk):
        return tower_transforms(trunk)
    height, width = trunk_input_size(trunk)
    if isinstance(trunk, torchvision.models.VisionTransformer):
        normalise = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        bicubic = T.InterpolationMode.BICUBIC
        evaluation = T.Compose([T.Resize(height, interpolation=bicubic),
                                T.CenterCrop((height, width)), T.ToTensor(), normalise])
        train = T.Compose([T.RandomResizedCrop((height, width), scale=(0.8, 1.0),
                                               interpolation=bicubic),
                           T.RandomHorizontalFlip(), T.ToTensor(), normalise])
        return train, evaluation
    data_cfg = timm.data.resolve_model_data_config(trunk)
    data_cfg["input_size"] = (3, height, width)
    return (timm.data.create_transform(**data_cfg, is_training=True),
            timm.data.create_transform(**data_cfg, is_training=False))


class EmbeddingModel(nn.Module):
    """trunk -> embedder; ``forward`` maps (B, 3, H, W) images to (B, D) raw embeddings.

    ``transform`` is the evaluation transform (PIL image -> tensor) and ``train_transform``
    the augmenting one; both match the trunk's input size.
    """

    def __init__(self, trunk: nn.Module, embedding_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.embedder = nn.Linear(trunk_features(trunk), embedding_dim)
        self.train_transform, self.transform = trunk_transforms(trunk)
        self.input_size = trunk_input_size(trunk)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedder(self.trunk(images))


def _load_into(module: nn.Module, state: Mapping[str, Any], path: Path | str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WorkflowInputError(path, f"weights do not fit the configured model ({exc})") from None


def build_embedding_model(trunk_cfg: Mapping[str, Any], embedding_dim: int,
                          trunk_state: Mapping[str, Any] | None = None) -> EmbeddingModel:
    """A new model: the trunk from ``trunk_state`` (pretrained) and a fresh embedder."""
    model = EmbeddingModel(build_trunk(trunk_cfg), embedding_dim)
    if trunk_state is not None:
        _load_into(model.trunk, trunk_state, "pretrained trunk")
    return model


def save_embedding_model(model: EmbeddingModel, out_dir: Path | str) -> None:
    """``trunk.safetensors`` and ``embedder.safetensors`` in ``out_dir``."""
    out_dir = Path(out_dir)
    save_state_dict(model.trunk.state_dict(), out_dir / TRUNK_FILE)
    save_state_dict(model.embedder.state_dict(), out_dir / EMBEDDER_FILE)


def load_embedding_model(model_dir: Path, trunk_cfg: dict, embedding_dim: int,
                         device: str = "cpu") -> torch.nn.Module:
    """A trained model from ``model_dir`` in eval mode on ``device`` (see EmbeddingModel)."""
    model_dir = Path(model_dir)
    model = EmbeddingModel(build_trunk(trunk_cfg), embedding_dim)
    for module, name in ((model.trunk, TRUNK_FILE), (model.embedder, EMBEDDER_FILE)):
        _load_into(module, load_state_dict(model_dir / name), model_dir / name)
    return model.to(device).eval()


def load_pretrained_model(key: str, trunk_cfg: Mapping[str, Any], cache: Path | str,
                          device: str = "cpu") -> EmbeddingModel:
    """A trunk exactly as published (from the weights cache), embedding with its own output.

    The pretrained baselines of the main table: no embedder is trained, so the trunk's pooled
    features (timm, torchvision) or projection (open_clip) are the embedding.
    """
    trunk = build_trunk(trunk_cfg)
    _load_into(trunk, cached_trunk_state(key, trunk_cfg, cache), Path(cache) / key)
    model = EmbeddingModel(trunk, trunk_features(trunk))
    model.embedder = nn.Identity()
    return model.to(device).eval()

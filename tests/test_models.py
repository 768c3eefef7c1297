"""Tiny real trunks (timm CLIP ViT and torchvision ViT), their transforms, saving and loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torchvision
from PIL import Image
from training_fixtures import TIMM_TINY, TORCHVISION_TINY

from overlearning.core.errors import WorkflowInputError
from overlearning.models.embedder import (
    EmbeddingModel,
    build_embedding_model,
    build_trunk,
    load_embedding_model,
    save_embedding_model,
    trunk_input_size,
)


def _image() -> Image.Image:
    return Image.new("RGB", (50, 30), (200, 40, 10))


@pytest.mark.parametrize("trunk_cfg", [TIMM_TINY, TORCHVISION_TINY], ids=["timm", "torchvision"])
def test_model_embeds_images_at_the_built_input_size(trunk_cfg: dict) -> None:
    torch.manual_seed(0)
    model = build_embedding_model(trunk_cfg, 12)
    assert model.input_size == (32, 32)
    for transform in (model.transform, model.train_transform):
        assert transform(_image()).shape == (3, 32, 32)
    batch = torch.stack([model.transform(_image()), model.train_transform(_image())])
    out = model.eval()(batch)
    assert out.shape == (2, 12)
    assert torch.isfinite(out).all()


def test_timm_trunk_is_the_clip_vit_family_without_classifier() -> None:
    trunk = build_trunk(TIMM_TINY)
    assert isinstance(trunk, timm.models.VisionTransformer)
    assert trunk.num_classes == 0 and trunk.num_features == 32
    # The pretrained configuration still says 384 px; the built model decides.
    assert trunk.pretrained_cfg["input_size"] == (3, 384, 384)
    assert trunk_input_size(trunk) == (32, 32)
    mean = trunk.pretrained_cfg["mean"]
    normalise = [t for t in build_embedding_model(TIMM_TINY, 4).transform.transforms
                 if isinstance(t, torchvision.transforms.Normalize)][0]
    assert tuple(normalise.mean.tolist()) == pytest.approx(mean)


def test_torchvision_trunk_takes_the_input_size_of_its_weights() -> None:
    cfg = {**TORCHVISION_TINY, "overrides": {k: v for k, v in TORCHVISION_TINY["overrides"].items()
                                             if k != "image_size"}}
    trunk = build_trunk(cfg)
    assert isinstance(trunk.heads, torch.nn.Identity)
    assert trunk_input_size(trunk) == (384, 384)  # IMAGENET1K_SWAG_E2E_V1


def test_unknown_torchvision_model_is_refused() -> None:
    with pytest.raises(WorkflowInputError, match="unsupported torchvision ViT"):
        build_trunk({**TORCHVISION_TINY, "name": "resnet50"})


@pytest.mark.parametrize("trunk_cfg", [TIMM_TINY, TORCHVISION_TINY], ids=["timm", "torchvision"])
def test_saved_model_loads_for_evaluation(tmp_path: Path, trunk_cfg: dict) -> None:
    torch.manual_seed(1)
    model = build_embedding_model(trunk_cfg, 8).eval()
    save_embedding_model(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedder.safetensors",
                                                           "trunk.safetensors"]
    loaded = load_embedding_model(tmp_path, trunk_cfg, 8)
    assert isinstance(loaded, EmbeddingModel) and not loaded.training
    batch = loaded.transform(_image()).unsqueeze(0)
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))


def test_loading_names_the_file_that_does_not_fit(tmp_path: Path) -> None:
    save_embedding_model(build_embedding_model(TIMM_TINY, 8), tmp_path)
    with pytest.raises(WorkflowInputError, match="embedder.safetensors"):
        load_embedding_model(tmp_path, TIMM_TINY, 16)
    (tmp_path / "trunk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WorkflowInputError, match="trunk.safetensors"):
        load_embedding_model(tmp_path, TIMM_TINY, 8)
    with pytest.raises(WorkflowInputError, match="not found"):
        load_embedding_model(tmp_path / "missing", TIMM_TINY, 8)

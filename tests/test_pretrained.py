"""Pretrained baselines: trunks evaluated exactly as downloaded (timm and open_clip)."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import timm
import torch
from training_fixtures import OPEN_CLIP_TINY, TIMM_TINY

from overlearning.core.errors import WorkflowInputError
from overlearning.models.cache import load_state_dict
from overlearning.models.embedder import build_trunk, load_pretrained_model
from overlearning.models.weights import prepare_model_weights


def test_full_size_open_clip_tower_has_the_published_keys_and_shapes():
    """Our tower is open_clip's own ViT-B-16 image tower: same state dict layout."""
    ours = build_trunk({**OPEN_CLIP_TINY, "overrides": {}}).state_dict()
    theirs = open_clip.create_model("ViT-B-16", pretrained=None).visual.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {
        k: tuple(v.shape) for k, v in theirs.items()}


def test_openai_tag_uses_quick_gelu_and_clip_statistics():
    tower = build_trunk(OPEN_CLIP_TINY)
    block = tower.transformer.resblocks[0]
    assert type(block.mlp.gelu).__name__ == "QuickGELU"
    assert tower.overlearning_preprocess["mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_unknown_open_clip_name_or_tag_is_named():
    with pytest.raises(WorkflowInputError, match="ViT-Q-99"):
        build_trunk({**OPEN_CLIP_TINY, "name": "ViT-Q-99"})
    with pytest.raises(WorkflowInputError, match="no pretrained tag 'nope'"):
        build_trunk({**OPEN_CLIP_TINY, "weights": "nope"})


@pytest.mark.parametrize("key, cfg", [("timm_clip", TIMM_TINY), ("open_clip_b16", OPEN_CLIP_TINY)])
def test_pretrained_model_embeds_with_the_trunk_output_itself(tmp_path: Path, key: str, cfg: dict):
    prepare_model_weights(key, cfg, tmp_path, "random", seed=3)
    model = load_pretrained_model(key, cfg, tmp_path)
    state = load_state_dict(tmp_path / key / "trunk.safetensors")
    # The reference: the library's own module, loaded with the same cached state.
    if cfg["kind"] == "timm":
        reference = timm.create_model(cfg["name"], pretrained=False, num_classes=0,
                                      **cfg["overrides"])
    else:
        reference = build_trunk(cfg)
    reference.load_state_dict(state)
    images = torch.randn(3, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(images), reference.eval()(images))
    assert isinstance(model.embedder, torch.nn.Identity)


def test_pretrained_trunk_built_for_another_config_is_refused(tmp_path: Path):
    prepare_model_weights("open_clip_b16", OPEN_CLIP_TINY, tmp_path, "random", seed=3)
    other = {**OPEN_CLIP_TINY, "overrides": {**OPEN_CLIP_TINY["overrides"], "layers": 2}}
    with pytest.raises(WorkflowInputError, match="the config asks for"):
        load_pretrained_model("open_clip_b16", other, tmp_path)



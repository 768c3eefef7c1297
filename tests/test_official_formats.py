"""The published weights files: stand-ins in the official formats, read by the weights rule.

Expected values come from outside our code: the publishers' own loaders (timm's pretrained
loader, torch.load + load_state_dict as torchvision and segment_anything do, GroundingDINO's
clean_state_dict + strict=False, transformers' from_pretrained), the load log reported in
IDEA-Research/GroundingDINO#271 and the BERT warning quoted in many issues, and the
published file sizes / parameter counts (torchvision's weight metadata, the sizes listed
with the sha256s in docs/weights.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from detector_fixtures import TINY_MODELS
from PIL import Image
from safetensors.torch import load_file, save_file
from training_fixtures import OPEN_CLIP_TINY, SEGFORMER_TINY, TIMM_TINY, TORCHVISION_TINY

from overlearning.core.errors import WorkflowInputError
from overlearning.detect.grounding import load_detector
from overlearning.models.detector_weights import TINY_BERT
from overlearning.models.detectors import GD_WEIGHTS, SAM_WEIGHTS, build_grounding_dino, build_sam
from overlearning.models.standins import write_standin_bundle
from overlearning.models.weights import prepare_weight_cache
from tests.conftest import REPO

# What every BERT load of bert-base-uncased warns about: the pre-training heads BertModel
# does not use (names as transformers reports them, LayerNorm gamma/beta renamed), less the
# decoder weight the safetensors file stores once, as the tied word embeddings.
BERT_UNUSED = {
    "cls.predictions.bias", "cls.predictions.transform.dense.weight",
    "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
    "cls.predictions.transform.LayerNorm.bias",
    "cls.seq_relationship.weight", "cls.seq_relationship.bias",
}
# IDEA-Research/GroundingDINO#271: the official loader's result on the published checkpoint.
GD_UNEXPECTED = ["label_enc.weight", "bert.embeddings.position_ids"]


def tiny_models() -> dict[str, Any]:
    models = {"timm_clip": dict(TIMM_TINY), "torchvision_vit": dict(TORCHVISION_TINY),
              "open_clip_b16": dict(OPEN_CLIP_TINY), "segformer_clothes": dict(SEGFORMER_TINY),
              **json.loads(json.dumps(TINY_MODELS))}
    models["grounding_dino"].update(
        checkpoint_url="https://huggingface.co/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swint_ogc.pth",
        text_encoder="bert-base-uncased")
    models["sam"]["checkpoint_url"] = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    return models


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    models = tiny_models()
    files = write_standin_bundle(models, tmp_path_factory.mktemp("bundle"), seed=4,
                                 bert_overrides=TINY_BERT)
    return models, files


def test_bundle_uses_the_published_names(bundle: tuple) -> None:
    models, files = bundle
    root = files["sam"].parent
    assert {k: p.relative_to(root).as_posix() for k, p in files.items()} == {
        "timm_clip": "timm/vit_base_patch16_clip_384.laion2b_ft_in12k_in1k/model.safetensors",
        "torchvision_vit": "vit_b_16_swag-9ac1b537.pth",
        "grounding_dino": "groundingdino_swint_ogc.pth",
        "text_encoder": "bert-base-uncased/model.safetensors",
        "sam": "sam_vit_b_01ec64.pth",
        # open_clip's hf_hub for ViT-B-16 "openai", and the safetensors name it tries first.
        "open_clip_b16": "open_clip/timm/vit_base_patch16_clip_224.openai/open_clip_model.safetensors",
        "segformer_clothes": "mattmdjaga/segformer_b2_clothes/model.safetensors",
    }
    assert sorted(p.name for p in (root / "bert-base-uncased").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    assert sorted(p.name for p in (root / "mattmdjaga/segformer_b2_clothes").iterdir()) == [
        "config.json", "model.safetensors"]


def test_publishers_loaders_accept_the_standins(bundle: tuple) -> None:
    import timm
    import torchvision
    from groundingdino.util.utils import clean_state_dict
    from transformers import BertModel

    models, files = bundle
    # timm's own pretrained loader, pointed at the local file.
    model = timm.create_model(TIMM_TINY["name"], pretrained=True,
                              pretrained_cfg_overlay={"file": str(files["timm_clip"])},
                              **TIMM_TINY["overrides"])
    stored = load_file(str(files["timm_clip"]))
    assert torch.equal(model.head.weight, stored["head.weight"])
    # torchvision: torch.load + load_state_dict (strict), with its legacy MLP names.
    vit = torchvision.models.VisionTransformer(patch_size=16, num_classes=1000,
                                               **TORCHVISION_TINY["overrides"])
    state = torch.load(files["torchvision_vit"], weights_only=True)
    assert any(".mlp.linear_1." in k for k in state)
    vit.load_state_dict(state, strict=True)
    # segment_anything's build_sam: torch.load + load_state_dict (strict).
    sam = build_sam(models["sam"])
    sam.load_state_dict(torch.load(files["sam"], weights_only=True), strict=True)
    # GroundingDINO's load_model: clean_state_dict(checkpoint["model"]), strict=False.
    checkpoint = torch.load(files["grounding_dino"], weights_only=True)
    assert list(checkpoint) == ["model"]
    gd = build_grounding_dino(models["grounding_dino"], files["text_encoder"].parent)
    result = gd.load_state_dict(clean_state_dict(checkpoint["model"]), strict=False)
    assert result.missing_keys == [] and sorted(result.unexpected_keys) == sorted(GD_UNEXPECTED)
    # transformers: the heads bert-base-uncased is known to carry, nothing missing.
    _, info = BertModel.from_pretrained(str(files["text_encoder"].parent), output_loading_info=True)
    # (transformers 4.57 reports unused keys under the file's gamma/beta names.)
    unused = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
              for k in info["unexpected_keys"]}
    assert unused == BERT_UNUSED and info["missing_keys"] == []
    # open_clip's load_checkpoint (strict) into its own CLIP class of the same configuration.
    import open_clip
    from open_clip.model import CLIP

    config = open_clip.get_model_config("ViT-B-16")
    overrides = dict(OPEN_CLIP_TINY["overrides"])
    clip = CLIP(overrides.pop("embed_dim"), {**config["vision_cfg"], **{
        k: v for k, v in overrides.items() if k != "text_cfg"}},
        {**config["text_cfg"], **overrides["text_cfg"]}, quick_gelu=True)
    assert open_clip.load_checkpoint(clip, str(files["open_clip_b16"])) == \
        torch.nn.modules.module._IncompatibleKeys([], [])
    # transformers' from_pretrained of the segmenter's hub folder: nothing unused or missing.
    from transformers import SegformerForSemanticSegmentation

    segformer, info = SegformerForSemanticSegmentation.from_pretrained(
        str(files["segformer_clothes"].parent), output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert segformer.config.id2label[4] == "Upper-clothes"


def test_files_source_fills_the_cache_from_the_bundle(bundle: tuple, tmp_path: Path) -> None:
    models, files = bundle
    manifests = prepare_weight_cache(models, tmp_path, "files", 0, files["sam"].parent)
    sources = {}
    for key, manifest in manifests.items():
        assert json.loads((tmp_path / key / "manifest.json").read_text()) == manifest
        sources.update(json.loads((tmp_path / key / "sources.json").read_text()))
    for key, path in files.items():
        assert sources[key]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # The cache holds the bundle's values: GroundingDINO without its "module." prefix,
    # torchvision under today's MLP names, SAM as published.
    published = torch.load(files["grounding_dino"], weights_only=True)["model"]
    cached = load_file(str(tmp_path / GD_WEIGHTS))
    assert torch.equal(cached["transformer.tgt_embed.weight"],
                       published["module.transformer.tgt_embed.weight"])
    assert "label_enc.weight" not in cached
    sam = torch.load(files["sam"], weights_only=True)
    assert all(torch.equal(v, sam[k]) for k, v in load_file(str(tmp_path / SAM_WEIGHTS)).items())
    trunk = load_file(str(tmp_path / "torchvision_vit" / "trunk.safetensors"))
    tv = torch.load(files["torchvision_vit"], weights_only=True)
    assert torch.equal(trunk["encoder.layers.encoder_layer_0.mlp.0.weight"],
                       tv["encoder.layers.encoder_layer_0.mlp.linear_1.weight"])
    assert not any(k.startswith("heads.") for k in trunk)
    # The open_clip baseline keeps the image tower only, without its "visual." prefix.
    tower = load_file(str(tmp_path / "open_clip_b16" / "trunk.safetensors"))
    published = load_file(str(files["open_clip_b16"]))
    assert set(tower) == {k.removeprefix("visual.") for k in published if k.startswith("visual.")}
    assert torch.equal(tower["proj"], published["visual.proj"])
    segformer = load_file(str(tmp_path / "segformer_clothes" / "model.safetensors"))
    assert all(torch.equal(v, load_file(str(files["segformer_clothes"]))[k]) for k, v in segformer.items())
    assert sources["segformer_clothes"]["file"] == "mattmdjaga/segformer_b2_clothes/model.safetensors"


def _copy_bundle(files: dict[str, Path], dest: Path) -> Path:
    import shutil

    root = files["sam"].parent
    shutil.copytree(root, dest)
    return dest


def _edit(path: Path, change: Any) -> None:
    """Apply ``change(state)`` to the state dict inside a bundle file, in its own format."""
    if path.suffix == ".safetensors":
        state = dict(load_file(str(path)))
        change(state)
        save_file(state, str(path), metadata={"format": "pt"})
        return
    raw = torch.load(path, weights_only=True)
    change(raw["model"] if "model" in raw else raw)
    torch.save(raw, path)


@pytest.mark.parametrize("key,extra", [
    ("timm_clip", "head.extra"),
    ("torchvision_vit", "heads.pre_logits.weight"),
    ("grounding_dino", "module.transformer.extra"),
    ("text_encoder", "cls.predictions.decoder.bias"),
    ("sam", "image_encoder.neck.4.weight"),
    ("open_clip_b16", "visual.head.weight"),
    ("segformer_clothes", "decode_head.extra.weight"),
])
def test_a_key_outside_the_allow_list_is_refused_by_name(bundle: tuple, tmp_path: Path,
                                                          key: str, extra: str) -> None:
    models, files = bundle
    root = _copy_bundle(files, tmp_path / "bundle")
    _edit(root / files[key].relative_to(files["sam"].parent),
          lambda state: state.__setitem__(extra, torch.zeros(2)))
    cache = tmp_path / "cache"
    with pytest.raises(WorkflowInputError) as error:
        prepare_weight_cache(models, cache, "files", 0, root)
    shown = extra.removeprefix("module.")
    assert f"unexpected key {shown!r}" in str(error.value)
    assert files[key].name in str(error.value)
    # The refused model leaves no folder (nor half of one); models before it are complete.
    owner = "grounding_dino" if key == "text_encoder" else key
    assert not (cache / owner).exists()
    assert all((folder / "manifest.json").is_file() for folder in cache.iterdir())


def test_missing_reshaped_and_mixed_prefix_keys_are_refused(bundle: tuple, tmp_path: Path) -> None:
    models, files = bundle
    rel = files["sam"].name
    root = _copy_bundle(files, tmp_path / "a")
    _edit(root / rel, lambda s: s.pop("mask_decoder.iou_token.weight"))
    with pytest.raises(WorkflowInputError, match="missing key 'mask_decoder.iou_token.weight'"):
        prepare_weight_cache(models, tmp_path / "cache_a", "files", 0, root)
    root = _copy_bundle(files, tmp_path / "b")
    _edit(root / rel, lambda s: s.__setitem__("mask_decoder.iou_token.weight", torch.zeros(1, 3)))
    with pytest.raises(WorkflowInputError, match="'mask_decoder.iou_token.weight' has shape"):
        prepare_weight_cache(models, tmp_path / "cache_b", "files", 0, root)
    root = _copy_bundle(files, tmp_path / "c")

    def unprefix_one(state: dict) -> None:
        state["label_enc.weight"] = state.pop("module.label_enc.weight")

    _edit(root / files["grounding_dino"].name, unprefix_one)
    with pytest.raises(WorkflowInputError, match="'module.' prefix, others do not"):
        prepare_weight_cache(models, tmp_path / "cache_c", "files", 0, root)


def test_unprefixed_groundingdino_checkpoint_is_accepted(bundle: tuple, tmp_path: Path) -> None:
    """Copies saved without DistributedDataParallel carry no "module." prefix."""
    models, files = bundle
    root = _copy_bundle(files, tmp_path / "bundle")
    path = root / files["grounding_dino"].name
    raw = torch.load(path, weights_only=True)
    torch.save({"model": {k.removeprefix("module."): v for k, v in raw["model"].items()}}, path)
    prepare_weight_cache(models, tmp_path / "cache", "files", 0, root)
    assert (tmp_path / "cache" / "grounding_dino" / "manifest.json").is_file()


def test_pinned_sha256_is_enforced(bundle: tuple, tmp_path: Path) -> None:
    models, files = bundle
    pinned = json.loads(json.dumps(models))
    pinned["sam"]["checkpoint_sha256"] = "0" * 64
    with pytest.raises(WorkflowInputError, match="differs from the pinned models.sam.checkpoint_sha256"):
        prepare_weight_cache(pinned, tmp_path / "cache", "files", 0, files["sam"].parent)
    pinned["sam"]["checkpoint_sha256"] = hashlib.sha256(files["sam"].read_bytes()).hexdigest()
    prepare_weight_cache(pinned, tmp_path / "cache", "files", 0, files["sam"].parent)


def test_files_source_needs_an_existing_bundle(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError, match="weights bundle folder not found"):
        prepare_weight_cache(tiny_models(), tmp_path / "cache", "files", 0, tmp_path / "nowhere")
    with pytest.raises(WorkflowInputError, match="weights.files"):
        prepare_weight_cache(tiny_models(), tmp_path / "cache", "files", 0, None)


# --- full size: the paper's models, files as big as the published ones ------------------

PAPER_MODELS: dict[str, Any] = {
    "timm_clip": {"kind": "timm", "name": "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
                  "overrides": {}},
    "torchvision_vit": {"kind": "torchvision", "name": "vit_b_16",
                        "weights": "IMAGENET1K_SWAG_E2E_V1", "overrides": {}},
    "grounding_dino": {"config": "GroundingDINO_SwinT_OGC", "text_encoder": "bert-base-uncased",
                       "checkpoint_url": tiny_models()["grounding_dino"]["checkpoint_url"],
                       "overrides": {}},
    "sam": {"variant": "vit_b", "checkpoint_url": tiny_models()["sam"]["checkpoint_url"],
            "overrides": {}},
    "open_clip_b16": {"kind": "open_clip", "name": "ViT-B-16", "weights": "openai", "overrides": {}},
    "segformer_clothes": {"name": "mattmdjaga/segformer_b2_clothes", "revision": "main",
                          "overrides": {}},
}
# Published sizes in bytes (docs/weights.md: GroundingDINO's with its sha256 in public
# pins; SAM's and bert's as the hosts list them); a pickle's framing varies a little.
PUBLISHED_BYTES = {"grounding_dino": 693_997_677, "sam": 375_042_383,
                   "text_encoder": 440_449_768}
# The hub lists the ViT-B/16 OpenAI CLIP weights as 599 MB (149.62 M float32 parameters,
# open_clip's model table); the hub rounds to whole MB.
OPEN_CLIP_B16_BYTES = 599e6


@pytest.mark.slow
def test_full_size_standins_match_the_published_files(tmp_path: Path) -> None:
    import torchvision
    from segment_anything import build_sam_vit_b

    files = write_standin_bundle(PAPER_MODELS, tmp_path / "bundle", seed=0)
    for key, size in PUBLISHED_BYTES.items():
        assert abs(files[key].stat().st_size - size) / size < 0.001, key
    # torchvision's own metadata for IMAGENET1K_SWAG_E2E_V1: parameters and file size (MB).
    meta = torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1.meta
    state = torch.load(files["torchvision_vit"], weights_only=True)
    assert sum(v.numel() for v in state.values()) == meta["num_params"]
    assert abs(files["torchvision_vit"].stat().st_size / 2**20 - meta["_file_size"]) < 1.0
    del state
    # segment_anything's official builder loads the stand-in strictly.
    build_sam_vit_b(checkpoint=str(files["sam"]))
    clip = load_file(str(files["open_clip_b16"]))
    assert round(sum(v.numel() for v in clip.values()) / 1e6, 2) == 149.62
    assert abs(files["open_clip_b16"].stat().st_size - OPEN_CLIP_B16_BYTES) < 1e6
    del clip
    manifests = prepare_weight_cache(PAPER_MODELS, tmp_path / "cache", "files", 0, tmp_path / "bundle")
    listed = {f"{key}/{rel}" for key, manifest in manifests.items() for rel in manifest}
    assert GD_WEIGHTS in listed and SAM_WEIGHTS in listed
    assert "open_clip_b16/trunk.safetensors" in listed
    assert "segformer_clothes/model.safetensors" in listed
    # Like a trained detector, the stand-in keeps a few of its 900 queries on every image at
    # the paper's thresholds (an uncalibrated one kept all 900, and SAM decoded every one;
    # one calibrated on the logits' spread alone kept none on the rehearsal's pictures).
    detection = yaml.safe_load((REPO / "config.yaml").read_text())["detection"]
    detector = load_detector(PAPER_MODELS, tmp_path / "cache", detection["prompts"],
                             detection["box_threshold"], detection["text_threshold"])
    noise = np.random.default_rng(0).integers(0, 256, (2, 128, 96, 3), dtype=np.uint8)
    kept = [len(d) for d in detector.detect([Image.fromarray(a) for a in noise])]
    assert all(1 <= k <= 30 for k in kept), kept


def test_segformer_config_must_carry_the_atr_labels(bundle: tuple, tmp_path: Path) -> None:
    models, files = bundle
    root = _copy_bundle(files, tmp_path / "bundle")
    config = root / "mattmdjaga/segformer_b2_clothes/config.json"
    published = json.loads(config.read_text())
    published["id2label"]["4"] = "Shirt"
    config.write_text(json.dumps(published))
    with pytest.raises(WorkflowInputError, match="id2label is not the ATR label set") as error:
        prepare_weight_cache(models, tmp_path / "cache", "files", 0, root)
    assert "config.json" in str(error.value)


def test_rehearsal_bundle_covers_every_model_the_weights_rule_prepares() -> None:
    """The rehearsal reads every model from stand-ins (weights.source files): each model of
    the merged config must have its published file in the bundle."""
    import yaml

    from overlearning.models.bundle import bundle_files

    root = Path(__file__).resolve().parents[1]
    models: dict[str, Any] = {}
    for name in ("config.yaml", "config.rehearse.yaml"):
        for key, value in (yaml.safe_load((root / name).read_text()).get("models") or {}).items():
            models.setdefault(key, {}).update(value)
    rehearse = yaml.safe_load((root / "config.rehearse.yaml").read_text())
    assert rehearse["weights"]["source"] == "files"
    assert set(bundle_files(models)) == set(models) | {"text_encoder"}
    # and the rehearsal runs the paper's probes and baselines, not a reduced set
    assert "clothes" not in rehearse and "pretrained" not in rehearse["evaluation"]

"""The weights cache: random trunks in the hub layout, the manifest, the offline checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from test_official_formats import tiny_models
from training_fixtures import TIMM_TINY, TORCHVISION_TINY

import overlearning.models.cache as weight_cache
import overlearning.models.weights as weights
from overlearning.core.errors import WorkflowInputError
from overlearning.models.detector_weights import TINY_BERT
from overlearning.models.embedder import build_trunk
from overlearning.models.standins import write_standin_bundle

MODELS = {"timm_clip": TIMM_TINY, "torchvision_vit": TORCHVISION_TINY,
          "sam": {"variant": "vit_b", "checkpoint_url": "x", "overrides": {}}}


@pytest.fixture
def fake_detector(monkeypatch: pytest.MonkeyPatch) -> list:
    """Stand-in for the detector helper's module: records its call, writes one file."""
    calls: list = []

    def prepare_detector_weights(models_cfg: dict, cache: Path, source: str,
                                 seed: int, bundle: Path | None = None) -> dict[str, str]:
        calls.append((sorted(models_cfg), Path(cache), source, seed))
        path = Path(cache) / "sam" / "weights.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"sam")
        return {"sam/weights.safetensors": hashlib.sha256(b"sam").hexdigest()}

    monkeypatch.setattr(weights, "prepare_detector_weights", prepare_detector_weights)
    return calls


def test_random_cache_has_hub_layout_and_true_checksums(tmp_path: Path, fake_detector: list) -> None:
    files = weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    assert fake_detector == [(["sam", "timm_clip", "torchvision_vit"], tmp_path, "random", 3)]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == files
    assert sorted(manifest) == ["sam/weights.safetensors", "timm_clip/build.json",
                                "timm_clip/trunk.safetensors", "torchvision_vit/build.json",
                                "torchvision_vit/trunk.safetensors"]
    for rel, digest in manifest.items():
        assert hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest() == digest
    build = json.loads((tmp_path / "timm_clip" / "build.json").read_text())
    assert build == {"kind": "timm", "name": TIMM_TINY["name"], "weights": None,
                     "overrides": TIMM_TINY["overrides"], "source": "random", "seed": 3}
    # The cached state dict fits the configured architecture.
    state = weight_cache.cached_trunk_state("torchvision_vit", TORCHVISION_TINY, tmp_path)
    build_trunk(TORCHVISION_TINY).load_state_dict(state, strict=True)


def test_random_cache_is_reproducible(tmp_path: Path, fake_detector: list) -> None:
    first = weights.prepare_weight_cache(MODELS, tmp_path / "a", "random", 3)
    second = weights.prepare_weight_cache(MODELS, tmp_path / "b", "random", 3)
    other = weights.prepare_weight_cache(MODELS, tmp_path / "c", "random", 4)
    assert first == second
    assert first["timm_clip/trunk.safetensors"] != other["timm_clip/trunk.safetensors"]
    assert (tmp_path / "a" / "manifest.json").read_bytes() == \
        (tmp_path / "b" / "manifest.json").read_bytes()


def test_missing_cache_tells_which_rule_to_run_where(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError) as error:
        weight_cache.require_weights(tmp_path)
    assert "snakemake weights" in str(error.value) and "login node" in str(error.value)
    assert "manifest.json" in str(error.value)


def test_damaged_or_unlisted_files_are_refused(tmp_path: Path, fake_detector: list) -> None:
    weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    assert weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])
    with pytest.raises(WorkflowInputError, match="not in the weights cache"):
        weight_cache.require_weights(tmp_path, ["vit_huge/trunk.safetensors"])
    trunk = tmp_path / "timm_clip" / "trunk.safetensors"
    trunk.write_bytes(trunk.read_bytes()[:-10])
    with pytest.raises(WorkflowInputError, match="checksum"):
        weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])
    trunk.unlink()
    with pytest.raises(WorkflowInputError, match="missing"):
        weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])


def test_cache_built_for_another_architecture_is_refused(tmp_path: Path,
                                                         fake_detector: list) -> None:
    weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    bigger = {**TIMM_TINY, "overrides": {**TIMM_TINY["overrides"], "depth": 2}}
    with pytest.raises(WorkflowInputError, match="snakemake weights"):
        weight_cache.cached_trunk_state("timm_clip", bigger, tmp_path)


def test_go_offline_points_hubs_at_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TORCH_HOME"):
        monkeypatch.delenv(name, raising=False)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    weight_cache.go_offline(tmp_path)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HOME"] == str(tmp_path.resolve() / "huggingface")
    assert os.environ["TORCH_HOME"] == str(tmp_path.resolve() / "torch")
    assert constants.HF_HUB_OFFLINE is True
    # With the hub off, asking timm for pretrained weights fails at once, without a download.
    import timm
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(LocalEntryNotFoundError):
        timm.create_model(TIMM_TINY["name"], pretrained=True, num_classes=0,
                          **TIMM_TINY["overrides"])


def test_state_dict_files_are_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "x" / "t.safetensors"
    weight_cache.save_state_dict({"w": torch.arange(6.0).reshape(2, 3).T}, path)
    assert torch.equal(weight_cache.load_state_dict(path)["w"], torch.arange(6.0).reshape(2, 3).T)
    assert [p.name for p in path.parent.iterdir()] == ["t.safetensors"]
    assert path.stat().st_mode & 0o044  # readable by the group/others like other outputs


def test_hub_source_fetches_pinned_files_then_reads_them_as_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The network calls replaced by copies from a local stand-in bundle: the hub source
    asks for the pinned revisions and torchvision's hash prefix, records them, and converts
    the downloaded files with the files source."""
    models = tiny_models()
    models["grounding_dino"]["text_encoder_revision"] = "b" * 40
    published = tmp_path / "published"
    write_standin_bundle(models, published, seed=2, bert_overrides=TINY_BERT)
    calls: list = []

    def hub_file(repo: str, filename: str, revision: str | None, dest: Path) -> str:
        calls.append(("hub", repo, filename, revision))
        # Where the bundle layout puts each repo's files (overlearning.models.bundle).
        src = next(p for p in (published / "open_clip" / repo / filename,
                               published / "timm" / repo.split("/")[-1] / filename,
                               published / repo / filename) if p.is_file())
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        return revision or "c" * 40

    def download(url: str, dest: Path, hash_prefix: str | None = None) -> None:
        calls.append(("url", url, hash_prefix))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(published / dest.name, dest)

    monkeypatch.setattr(weights, "_hub_file", hub_file)
    monkeypatch.setattr(weights, "_download_url", download)
    manifest = weights.prepare_weight_cache(models, tmp_path / "cache", "hub", 0)
    assert ("url", "https://download.pytorch.org/models/vit_b_16_swag-9ac1b537.pth", "9ac1b537") in calls
    assert ("hub", "timm/vit_base_patch16_clip_384.laion2b_ft_in12k_in1k", "model.safetensors",
            None) in calls
    assert ("hub", "bert-base-uncased", "model.safetensors", "b" * 40) in calls
    assert ("hub", "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
            None) in calls
    assert ("hub", "mattmdjaga/segformer_b2_clothes", "config.json", "main") in calls
    sources = json.loads((tmp_path / "cache" / "sources.json").read_text())
    assert sources["timm_clip"]["revision"] == "c" * 40
    assert sources["text_encoder"] == {"file": "bert-base-uncased/model.safetensors",
                                       "repo": "bert-base-uncased", "revision": "b" * 40,
                                       "sha256": hashlib.sha256(
                                           (published / "bert-base-uncased" / "model.safetensors")
                                           .read_bytes()).hexdigest()}
    assert "sources.json" in manifest and "grounding_dino/model.safetensors" in manifest
    # Nothing downloaded stays in the cache, only the converted safetensors.
    assert not any(p.suffix == ".pth" for p in (tmp_path / "cache").rglob("*"))

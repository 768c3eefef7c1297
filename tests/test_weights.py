"""The weights cache: random trunks in the hub layout, the manifest, the offline checks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from detector_fixtures import TINY_MODELS
from test_official_formats import tiny_models
from training_fixtures import TIMM_TINY, TORCHVISION_TINY

import overlearning.models.cache as weight_cache
import overlearning.models.weights as weights
from overlearning.core.errors import WorkflowInputError
from overlearning.models.detector_weights import TINY_BERT
from overlearning.models.embedder import build_trunk
from overlearning.models.standins import write_standin_bundle

MODELS = {"timm_clip": TIMM_TINY, "torchvision_vit": TORCHVISION_TINY,
          "sam": TINY_MODELS["sam"]}


def test_random_cache_has_one_folder_and_manifest_per_model(tmp_path: Path) -> None:
    manifests = weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sam", "timm_clip", "torchvision_vit"]
    assert sorted(manifests["timm_clip"]) == ["build.json", "trunk.safetensors"]
    assert sorted(manifests["sam"]) == ["build.json", "model.safetensors"]
    for key, manifest in manifests.items():
        folder = tmp_path / key
        assert json.loads((folder / "manifest.json").read_text()) == manifest
        # Every other file of the folder is listed, with its true sha256.
        assert sorted(manifest) == sorted(p.relative_to(folder).as_posix()
                                          for p in folder.rglob("*")
                                          if p.is_file() and p.name != "manifest.json")
        for rel, digest in manifest.items():
            assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
    build = json.loads((tmp_path / "timm_clip" / "build.json").read_text())
    assert build == {"kind": "timm", "name": TIMM_TINY["name"], "weights": None,
                     "overrides": TIMM_TINY["overrides"], "source": "random", "seed": 3}
    # The cached state dict fits the configured architecture.
    state = weight_cache.cached_trunk_state("torchvision_vit", TORCHVISION_TINY, tmp_path)
    build_trunk(TORCHVISION_TINY).load_state_dict(state, strict=True)


def test_random_cache_is_reproducible(tmp_path: Path) -> None:
    first = weights.prepare_weight_cache(MODELS, tmp_path / "a", "random", 3)
    second = weights.prepare_weight_cache(MODELS, tmp_path / "b", "random", 3)
    other = weights.prepare_model_weights("timm_clip", TIMM_TINY, tmp_path / "c", "random", 4)
    assert first == second
    assert first["timm_clip"]["trunk.safetensors"] != other["trunk.safetensors"]
    for key in MODELS:
        assert (tmp_path / "a" / key / "manifest.json").read_bytes() == \
            (tmp_path / "b" / key / "manifest.json").read_bytes()


def test_one_models_job_replaces_its_folder_only(tmp_path: Path) -> None:
    weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    (tmp_path / "sam" / "left-over.txt").write_text("from an older layout")
    bigger = {**MODELS["sam"], "overrides": {**MODELS["sam"]["overrides"], "encoder_depth": 2}}
    manifest = weights.prepare_model_weights("sam", bigger, tmp_path, "random", 3)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert {p: v for p, v in after.items() if p.parent.name != "sam"} == \
        {p: v for p, v in before.items() if p.parent.name != "sam"}
    assert not (tmp_path / "sam" / "left-over.txt").exists()
    assert manifest["model.safetensors"] != json.loads(
        before[tmp_path / "sam" / "manifest.json"][0])["model.safetensors"]
    # Nothing else beside the folders: no temporary left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sam", "timm_clip", "torchvision_vit"]


def test_missing_cache_tells_which_rule_to_run_where(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError) as error:
        weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])
    assert "snakemake weights" in str(error.value) and "login node" in str(error.value)
    assert "timm_clip/manifest.json" in str(error.value)


def test_damaged_or_unlisted_files_are_refused(tmp_path: Path) -> None:
    weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])
    with pytest.raises(WorkflowInputError, match="not cached"):
        weight_cache.require_weights(tmp_path, ["vit_huge/trunk.safetensors"])
    with pytest.raises(WorkflowInputError, match="not in the weights cache"):
        weight_cache.require_weights(tmp_path, ["timm_clip/other.safetensors"])
    trunk = tmp_path / "timm_clip" / "trunk.safetensors"
    trunk.write_bytes(trunk.read_bytes()[:-10])
    with pytest.raises(WorkflowInputError, match="checksum"):
        weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])
    trunk.unlink()
    with pytest.raises(WorkflowInputError, match="missing"):
        weight_cache.require_weights(tmp_path, ["timm_clip/trunk.safetensors"])
    (tmp_path / "sam" / "manifest.json").write_text('["not", "an", "object"]')
    with pytest.raises(WorkflowInputError, match="not a JSON object"):
        weight_cache.require_weights(tmp_path, ["sam/model.safetensors"])


def test_cache_built_for_another_architecture_is_refused(tmp_path: Path) -> None:
    weights.prepare_weight_cache(MODELS, tmp_path, "random", 3)
    bigger = {**TIMM_TINY, "overrides": {**TIMM_TINY["overrides"], "depth": 2}}
    with pytest.raises(WorkflowInputError, match="snakemake weights"):
        weight_cache.cached_trunk_state("timm_clip", bigger, tmp_path)


def test_unknown_model_entry_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError, match="models.mystery"):
        weights.prepare_model_weights("mystery", {"name": "x"}, tmp_path, "random", 3)
    assert list(tmp_path.iterdir()) == []


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
    manifests = weights.prepare_weight_cache(models, tmp_path / "cache", "hub", 0)
    assert ("url", "https://download.pytorch.org/models/vit_b_16_swag-9ac1b537.pth", "9ac1b537") in calls
    assert ("hub", "timm/vit_base_patch16_clip_384.laion2b_ft_in12k_in1k", "model.safetensors",
            None) in calls
    assert ("hub", "bert-base-uncased", "model.safetensors", "b" * 40) in calls
    assert ("hub", "timm/vit_base_patch16_clip_224.openai", "open_clip_model.safetensors",
            None) in calls
    assert ("hub", "mattmdjaga/segformer_b2_clothes", "config.json", "main") in calls
    cache = tmp_path / "cache"
    assert json.loads((cache / "timm_clip" / "sources.json").read_text())["timm_clip"][
        "revision"] == "c" * 40
    # GroundingDINO's folder records its BERT too; each folder only its own files.
    sources = json.loads((cache / "grounding_dino" / "sources.json").read_text())
    assert sorted(sources) == ["grounding_dino", "text_encoder"]
    assert sources["text_encoder"] == {"file": "bert-base-uncased/model.safetensors",
                                       "repo": "bert-base-uncased", "revision": "b" * 40,
                                       "sha256": hashlib.sha256(
                                           (published / "bert-base-uncased" / "model.safetensors")
                                           .read_bytes()).hexdigest()}
    assert all("sources.json" in manifest for manifest in manifests.values())
    assert "model.safetensors" in manifests["grounding_dino"]
    # Nothing downloaded stays in the cache, only the converted safetensors.
    assert not any(p.suffix == ".pth" for p in (tmp_path / "cache").rglob("*"))
    assert sorted(p.name for p in cache.iterdir()) == sorted(models)

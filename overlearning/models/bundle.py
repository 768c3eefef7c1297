"""The weights bundle: the published pretrained files, under their published names, in one folder.

``weights.source: files`` reads the bundle from ``weights.files`` (an offline copy, or the
stand-ins of overlearning.models.standins); ``weights.source: hub`` downloads the same files
into a temporary bundle first (overlearning.models.weights). Layout, relative to the bundle::

    timm/<timm name>/model.safetensors    the timm hub repo's weights file
    <basename of torchvision's URL>       e.g. vit_b_16_swag-9ac1b537.pth
    <basename of checkpoint_url>          groundingdino_swint_ogc.pth, sam_vit_b_01ec64.pth
    <text_encoder>/                       bert-base-uncased: BERT_FILES
    open_clip/<hub repo>/open_clip_model.safetensors   an open_clip baseline's CLIP model
    <segformer_clothes name>/             mattmdjaga/segformer_b2_clothes: SEGFORMER_FILES
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from overlearning.core.errors import WorkflowInputError
from overlearning.models.cache import model_kind
from overlearning.models.embedder import torchvision_weights
from overlearning.models.open_clip_trunk import hub_file

# What the GroundingDINO text encoder needs from its hub repo (tokenizer and weights).
BERT_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
              "model.safetensors")
# What the clothes segmenter needs from its hub repo (labels and weights).
SEGFORMER_FILES = ("config.json", "model.safetensors")


def url_basename(url: str, where: str) -> str:
    name = PurePosixPath(urlparse(url).path).name
    if not name:
        raise WorkflowInputError(where, f"URL {url!r} names no file")
    return name


def timm_hub_id(name: str) -> str:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        cfg = None
    if cfg is None or not cfg.hf_hub_id:
        raise WorkflowInputError(f"models: {name}", "timm names no Hugging Face hub repo for it")
    return str(cfg.hf_hub_id)


def trunk_file(trunk_cfg: Mapping[str, Any]) -> str:
    """The bundle path of a trunk's published weights file."""
    if trunk_cfg["kind"] == "timm":
        return f"timm/{trunk_cfg['name']}/model.safetensors"
    if trunk_cfg["kind"] == "open_clip":
        repo, filename = hub_file(trunk_cfg)
        return f"open_clip/{repo}/{filename}"
    weights = torchvision_weights(trunk_cfg)
    if weights is None:
        raise WorkflowInputError(f"models: {trunk_cfg['name']}", "names no pretrained weights")
    return url_basename(weights.url, f"models: {trunk_cfg['name']}")


def published_files(key: str, model_cfg: Mapping[str, Any]) -> dict[str, str]:
    """{name: bundle path} of the published files that ``models.<key>`` is made from: the
    model's own file under ``key``, and GroundingDINO's BERT under ``text_encoder``."""
    kind = model_kind(key, model_cfg)
    if kind == "trunk":
        return {key: trunk_file(model_cfg)}
    if kind == "grounding_dino":
        return {"grounding_dino": url_basename(model_cfg["checkpoint_url"],
                                               "models.grounding_dino.checkpoint_url"),
                "text_encoder": f"{model_cfg['text_encoder']}/model.safetensors"}
    if kind == "sam":
        return {"sam": url_basename(model_cfg["checkpoint_url"], "models.sam.checkpoint_url")}
    return {"segformer_clothes": f"{model_cfg['name']}/model.safetensors"}


def bundle_files(models_cfg: Mapping[str, Any]) -> dict[str, str]:
    """{name: bundle path of a published weights file} of every model in ``models_cfg``;
    BERT under ``text_encoder``."""
    return {name: rel for key in sorted(models_cfg)
            for name, rel in published_files(key, models_cfg[key]).items()}

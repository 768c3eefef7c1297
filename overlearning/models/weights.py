"""Filling the pretrained-weights cache (the ``weights`` rule), once, where the network is.

With ``source: hub`` the trunks come from the model hubs (only the ``weights`` rule, on the
login node, may do that); with ``source: random`` they are tiny seeded random
initialisations of the same architectures written in the same layout, so downstream code
always loads from the cache (overlearning.models.cache) the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from overlearning.core.atomic import write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import sha256_file
from overlearning.models.cache import (
    BUILD_FILE,
    MANIFEST,
    TRUNK_FILE,
    build_record,
    hub_homes,
    save_state_dict,
    trunk_keys,
)
from overlearning.models.detector_weights import prepare_detector_weights
from overlearning.models.embedder import build_trunk, torchvision_weights
from overlearning.models.open_clip_trunk import hub_tower_state
from overlearning.models.segformer import prepare_segformer_weights


def _hub_state_dict(trunk_cfg: Mapping[str, Any], download_dir: Path) -> dict[str, Any]:
    """The pretrained trunk's state dict, downloaded into ``download_dir`` (network!)."""
    overrides = dict(trunk_cfg.get("overrides") or {})
    if trunk_cfg["kind"] == "timm":
        import timm

        model = timm.create_model(trunk_cfg["name"], pretrained=True, num_classes=0,
                                  cache_dir=download_dir, **overrides)
        return model.state_dict()
    if trunk_cfg["kind"] == "open_clip":
        return hub_tower_state(trunk_cfg, str(download_dir))
    weights = torchvision_weights(trunk_cfg)
    if weights is None:
        raise WorkflowInputError("models." + trunk_cfg["name"],
                                 "weights.source is hub but the model names no weights")
    state = weights.get_state_dict(progress=False, model_dir=str(download_dir), check_hash=True,
                                   map_location="cpu", weights_only=True)
    # The trunk has no classification head (heads = Identity).
    state = {k: v for k, v in state.items() if not k.startswith("heads.")}
    model = build_trunk(trunk_cfg)
    model.load_state_dict(state, strict=True)
    return model.state_dict()


def prepare_trunk_weights(key: str, trunk_cfg: Mapping[str, Any], cache: Path | str,
                          source: str, seed: int) -> dict[str, str]:
    """Write ``<cache>/<key>/{trunk.safetensors,build.json}``; return {relative path: sha256}.

    ``source`` "hub" downloads the pretrained weights; "random" writes the seeded random
    initialisation of the architecture that ``trunk_cfg`` (with its overrides) describes.
    """
    cache = Path(cache)
    folder = cache / key
    if source == "hub":
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            state = _hub_state_dict(trunk_cfg, Path(tmp))
    elif source == "random":
        torch.manual_seed(seed)
        state = build_trunk(trunk_cfg).state_dict()
    else:
        raise WorkflowInputError("weights.source", f"unknown source {source!r} (hub or random)")
    save_state_dict(state, folder / TRUNK_FILE)
    write_json(folder / BUILD_FILE, build_record(trunk_cfg, source, seed))
    return {f"{key}/{name}": sha256_file(folder / name) for name in (TRUNK_FILE, BUILD_FILE)}


def prepare_weight_cache(models_cfg: Mapping[str, Any], cache: Path | str, source: str,
                         seed: int) -> dict[str, str]:
    """Fill the cache with every model's weights and write the manifest last.

    The manifest is the rule's output: it only appears once every file is complete, and it
    records the sha256 of each file so that a truncated copy is noticed on the compute node.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    # Anything a library fetches through the hubs lands in the cache, where the offline
    # compute jobs (same variables, see go_offline) will find it.
    os.environ.update(hub_homes(cache))
    files: dict[str, str] = {}
    for key in trunk_keys(models_cfg):
        print(f"trunk {key}: {models_cfg[key]['name']} ({source})", file=sys.stderr)
        files.update(prepare_trunk_weights(key, models_cfg[key], cache, source, seed))
    files.update(prepare_detector_weights(dict(models_cfg), cache, source, seed))
    if "segformer_clothes" in models_cfg:
        print(f"clothes segmenter: {models_cfg['segformer_clothes']['name']} ({source})",
              file=sys.stderr)
        files.update(prepare_segformer_weights(models_cfg["segformer_clothes"], cache, source, seed))
    for rel in files:
        if not (cache / rel).is_file():
            raise WorkflowInputError(cache / rel, "listed for the manifest but not written")
    write_json(cache / MANIFEST, dict(sorted(files.items())))
    return files



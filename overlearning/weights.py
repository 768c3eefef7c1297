"""The pretrained-weights cache: filled once where the network is, read offline everywhere else.

Layout of the cache folder (``weights.cache``)::

    manifest.json                 {relative path: sha256} of every file below
    timm_clip/trunk.safetensors   the trunk's state dict (timm ViT, no classifier)
    timm_clip/build.json          how it was built: kind, name, overrides, source
    torchvision_vit/...           the same for the torchvision ViT (AttnLRP twins)
    grounding_dino/, sam/         written by overlearning.detector_weights

With ``source: hub`` the trunks come from the model hubs (only the ``weights`` rule, on the
login node, may do that); with ``source: random`` they are tiny seeded random
initialisations of the same architectures written in the same layout, so downstream code
always loads from the cache the same way. Compute jobs call :func:`go_offline` first and
:func:`require_weights` to fail early with a message that says which rule to run where.

Importing this module is cheap (torch and timm are imported only where needed), because
:func:`go_offline` must run before huggingface_hub is imported.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overlearning.atomic import read_json, write_json
from overlearning.errors import WorkflowInputError

MANIFEST = "manifest.json"
TRUNK_FILE = "trunk.safetensors"
BUILD_FILE = "build.json"
TRUNK_KINDS = ("timm", "torchvision")
FETCH_HINT = "run `snakemake weights` on the login node (it needs the network)"


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_homes(cache: Path | str) -> dict[str, str]:
    """Where torch.hub and the Hugging Face hub look for files: inside the cache."""
    cache = Path(cache).resolve()
    return {"TORCH_HOME": str(cache / "torch"), "HF_HOME": str(cache / "huggingface")}


def go_offline(cache: Path | str) -> None:
    """Switch hub access off and point the hub caches at ``cache`` (call before loading models).

    huggingface_hub reads HF_HUB_OFFLINE when it is imported, so the flag is also set on the
    module when something imported it already.
    """
    os.environ.update(hub_homes(cache))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[name] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def trunk_keys(models_cfg: Mapping[str, Any]) -> list[str]:
    """The config's model entries that are embedding trunks (timm or torchvision ViTs)."""
    return sorted(k for k, v in models_cfg.items() if v.get("kind") in TRUNK_KINDS)


def build_record(trunk_cfg: Mapping[str, Any], source: str, seed: int) -> dict[str, Any]:
    """What build.json says about a cached trunk; loading compares it with the config."""
    record = {
        "kind": trunk_cfg["kind"],
        "name": trunk_cfg["name"],
        "weights": trunk_cfg.get("weights"),
        "overrides": dict(trunk_cfg.get("overrides") or {}),
        "source": source,
    }
    if source == "random":
        record["seed"] = seed
    return record


def save_state_dict(state: Mapping[str, Any], path: Path) -> None:
    """Write a state dict as safetensors through a temporary file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
        # safetensors creates the file owner-only; give it the usual permissions instead.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_state_dict(path: Path | str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise WorkflowInputError(path, "weights file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise WorkflowInputError(path, f"corrupt safetensors file ({exc})") from None


def _hub_state_dict(trunk_cfg: Mapping[str, Any], download_dir: Path) -> dict[str, Any]:
    """The pretrained trunk's state dict, downloaded into ``download_dir`` (network!)."""
    from overlearning.models import build_trunk, torchvision_weights

    overrides = dict(trunk_cfg.get("overrides") or {})
    if trunk_cfg["kind"] == "timm":
        import timm

        model = timm.create_model(trunk_cfg["name"], pretrained=True, num_classes=0,
                                  cache_dir=download_dir, **overrides)
        return model.state_dict()
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
    import torch

    from overlearning.models import build_trunk

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


def _detector_weights(models_cfg: Mapping[str, Any], cache: Path, source: str,
                      seed: int) -> dict[str, str]:
    try:
        from overlearning.detector_weights import prepare_detector_weights
    except ModuleNotFoundError as exc:
        if exc.name != "overlearning.detector_weights":
            raise
        print("warning: overlearning.detector_weights is missing; detector weights not "
              "prepared", file=sys.stderr)
        return {}
    return prepare_detector_weights(dict(models_cfg), cache, source, seed)


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
    files.update(_detector_weights(models_cfg, cache, source, seed))
    for rel in files:
        if not (cache / rel).is_file():
            raise WorkflowInputError(cache / rel, "listed for the manifest but not written")
    write_json(cache / MANIFEST, dict(sorted(files.items())))
    return files


def require_weights(cache: Path | str, needed: Iterable[str] = (),
                    verify: bool = True) -> dict[str, str]:
    """The cache's manifest, after checking that the ``needed`` files are there and intact.

    Stops with a message naming the ``weights`` rule when the cache was never filled, which
    is what happens when a compute node (no network) runs before the login-node step.
    """
    cache = Path(cache)
    manifest_path = cache / MANIFEST
    if not manifest_path.is_file():
        raise WorkflowInputError(manifest_path, f"pretrained weights are not cached; {FETCH_HINT}")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise WorkflowInputError(manifest_path, "manifest is not a JSON object")
    for rel in needed:
        path = cache / rel
        if rel not in manifest:
            raise WorkflowInputError(manifest_path, f"{rel} is not in the weights cache; {FETCH_HINT}")
        if not path.is_file():
            raise WorkflowInputError(path, f"cached weights file is missing; {FETCH_HINT}")
        if verify and sha256_file(path) != manifest[rel]:
            raise WorkflowInputError(path, f"checksum differs from {MANIFEST}; {FETCH_HINT}")
    return manifest


def cached_trunk_state(key: str, trunk_cfg: Mapping[str, Any], cache: Path | str) -> dict[str, Any]:
    """The cached trunk's state dict, after checking it was built for ``trunk_cfg``."""
    cache = Path(cache)
    require_weights(cache, [f"{key}/{TRUNK_FILE}", f"{key}/{BUILD_FILE}"])
    record = read_json(cache / key / BUILD_FILE)
    wanted = build_record(trunk_cfg, record.get("source", ""), record.get("seed", 0))
    if {k: record.get(k) for k in wanted} != wanted:
        raise WorkflowInputError(
            cache / key / BUILD_FILE,
            f"cached trunk was built as {record}, the config asks for {wanted}; {FETCH_HINT}",
        )
    return load_state_dict(cache / key / TRUNK_FILE)

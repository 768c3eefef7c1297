"""The pretrained-weights cache as compute jobs see it: layout, manifest, offline loading.

Layout of the cache folder (``weights.cache``)::

    manifest.json                 {relative path: sha256} of every file below
    timm_clip/trunk.safetensors   the trunk's state dict (timm ViT, no classifier)
    timm_clip/build.json          how it was built: kind, name, overrides, source
    torchvision_vit/...           the same for the torchvision ViT (AttnLRP twins)
    grounding_dino/, sam/         written by overlearning.models.detector_weights

The cache is filled by overlearning.models.weights (the ``weights`` rule). Compute jobs call
:func:`go_offline` first and :func:`require_weights` to fail early with a message that says
which rule to run where.

Importing this module is cheap (torch is imported only where needed), because
:func:`go_offline` must run before huggingface_hub is imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overlearning.core.atomic import read_json, writing
from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import sha256_file

MANIFEST = "manifest.json"
TRUNK_FILE = "trunk.safetensors"
BUILD_FILE = "build.json"
TRUNK_KINDS = ("timm", "torchvision", "open_clip")
FETCH_HINT = "run `snakemake weights` on the login node (it needs the network)"


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
    """The config's model entries that are embedding trunks (timm, torchvision, open_clip)."""
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
        with writing(path):
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

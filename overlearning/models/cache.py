"""The pretrained-weights cache as compute jobs see it: layout, manifest, offline loading.

Layout of the cache folder (``weights.cache``): one folder per model of the config's
``models:``, each written whole by its own job and carrying its own manifest::

    timm_clip/manifest.json       {path in the folder: sha256} of every other file in it
    timm_clip/trunk.safetensors   the trunk's state dict (timm ViT, no classifier)
    timm_clip/build.json          how it was built: kind, name, overrides, source
    timm_clip/sources.json        published file, its sha256 and origin (hub and files sources)
    torchvision_vit/...           the same for the torchvision ViT (AttnLRP twins)
    grounding_dino/, sam/         written by overlearning.models.detector_weights
    segformer_clothes/            written by overlearning.models.segformer

A job reads only the folders of the models it uses, so a rule takes only those manifests as
input and editing one model's entry reruns only the jobs that use it. The cache is filled by
overlearning.models.weights (the ``model_weights`` rule, one job per model). Compute jobs call
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
NON_TRUNK_MODELS = ("grounding_dino", "sam", "segformer_clothes")
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


def model_kind(key: str, model_cfg: Mapping[str, Any]) -> str:
    """What a ``models.<key>`` entry is: "trunk" or one of the fixed non-trunk keys."""
    if model_cfg.get("kind") in TRUNK_KINDS:
        return "trunk"
    if key in NON_TRUNK_MODELS:
        return key
    raise WorkflowInputError(f"models.{key}", f"neither a trunk (kind {', '.join(TRUNK_KINDS)}) "
                                              f"nor one of {', '.join(NON_TRUNK_MODELS)}")


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


def read_manifest(folder: Path | str) -> dict[str, str]:
    """A model folder's manifest ({path in the folder: sha256}), refusing a missing or
    malformed one with a message naming the rule to run."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise WorkflowInputError(path, f"pretrained weights are not cached; {FETCH_HINT}")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()):
        raise WorkflowInputError(path, "manifest is not a JSON object of file: sha256")
    return manifest


def check_listed_file(folder: Path | str, rel: str, manifest: Mapping[str, str],
                      verify: bool = True) -> None:
    """``folder/rel`` is listed in ``manifest``, present and (``verify``) intact."""
    folder = Path(folder)
    if rel not in manifest:
        raise WorkflowInputError(folder / MANIFEST, f"{rel} is not in the weights cache; {FETCH_HINT}")
    path = folder / rel
    if not path.is_file():
        raise WorkflowInputError(path, f"cached weights file is missing; {FETCH_HINT}")
    if verify and sha256_file(path) != manifest[rel]:
        raise WorkflowInputError(path, f"checksum differs from {MANIFEST}; {FETCH_HINT}")


def require_weights(cache: Path | str, needed: Iterable[str], verify: bool = True) -> None:
    """Check that the ``needed`` files (``<model>/<path>`` relative to the cache) are listed
    in their model folder's manifest, there and intact.

    Stops with a message naming the ``weights`` rule when the cache was never filled, which
    is what happens when a compute node (no network) runs before the login-node step.
    """
    cache = Path(cache)
    manifests: dict[str, dict[str, str]] = {}
    for rel in needed:
        model, _, inner = rel.partition("/")
        if model not in manifests:
            manifests[model] = read_manifest(cache / model)
        check_listed_file(cache / model, inner, manifests[model], verify)


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

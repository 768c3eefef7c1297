"""Filling the pretrained-weights cache (the ``weights`` rule), once, where the network is.

With ``source: hub`` the published files are downloaded (only the ``weights`` rule, on the
login node, may do that) into a temporary weights bundle; with ``source: files`` they are
read from a bundle folder (an offline copy, or stand-ins); either way every file is checked
against its published format (overlearning.models.official) and converted into the cache.
With ``source: random`` the models are tiny seeded random initialisations of the same
architectures written in the same layout, so downstream code always loads from the cache
(overlearning.models.cache) the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from overlearning.core.atomic import write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import sha256_file
from overlearning.models.bundle import (
    BERT_FILES,
    SEGFORMER_FILES,
    bundle_files,
    timm_hub_id,
    trunk_file,
)
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
from overlearning.models.official import FORMATS, load_official
from overlearning.models.open_clip_trunk import hub_file
from overlearning.models.segformer import prepare_segformer_weights

# Per published file: its sha256 and where it came from (written for hub and files).
SOURCES = "sources.json"


def _files_state_dict(trunk_cfg: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The trunk's state dict from its published file, checked against the published format."""
    model = build_trunk(trunk_cfg)
    load_official(path, model, FORMATS[trunk_cfg["kind"]])
    return model.state_dict()


def prepare_trunk_weights(key: str, trunk_cfg: Mapping[str, Any], cache: Path | str,
                          source: str, seed: int, bundle: Path | None = None) -> dict[str, str]:
    """Write ``<cache>/<key>/{trunk.safetensors,build.json}``; return {relative path: sha256}.

    ``source`` "files" reads the published weights file from the weights ``bundle``;
    "random" writes the seeded random initialisation of the architecture that ``trunk_cfg``
    (with its overrides) describes.
    """
    cache = Path(cache)
    folder = cache / key
    if source == "files":
        if bundle is None:
            raise WorkflowInputError("weights.files", "source files needs the bundle folder")
        state = _files_state_dict(trunk_cfg, Path(bundle) / trunk_file(trunk_cfg))
    elif source == "random":
        torch.manual_seed(seed)
        state = build_trunk(trunk_cfg).state_dict()
    else:
        raise WorkflowInputError("weights.source", f"unknown source {source!r} (hub, files or random)")
    save_state_dict(state, folder / TRUNK_FILE)
    write_json(folder / BUILD_FILE, build_record(trunk_cfg, source, seed))
    return {f"{key}/{name}": sha256_file(folder / name) for name in (TRUNK_FILE, BUILD_FILE)}


# --- the network side (hub source): fetch the published files into a bundle -------------
# Only this block touches the network; everything after the bytes arrive is the files
# source, which the tests and `make rehearse` run offline on stand-ins.


def _download_url(url: str, dest: Path, hash_prefix: str | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=hash_prefix, progress=False)


def _hub_file(repo: str, filename: str, revision: str | None, dest: Path) -> str:
    """Download ``filename`` of hub repo ``repo`` at ``revision`` to ``dest``; the commit used."""
    from huggingface_hub import HfApi, hf_hub_download

    # Resolve the revision once, so every file comes from the same commit and the
    # manifest can name it even where the config pins none.
    commit = HfApi().model_info(repo, revision=revision).sha
    dest.parent.mkdir(parents=True, exist_ok=True)
    got = hf_hub_download(repo, filename, revision=commit, local_dir=str(dest.parent))
    if Path(got).resolve() != dest.resolve():
        os.replace(got, dest)
    return str(commit)


def _hub_files(repo: str, filenames: Sequence[str], revision: str | None, folder: Path) -> str:
    """Several files of one hub repo into ``folder``, all from the commit the first resolves
    (an unpinned repo could move between two downloads); the commit used."""
    for filename in filenames:
        revision = _hub_file(repo, filename, revision, folder / filename)
    return str(revision)


def fetch_bundle(models_cfg: Mapping[str, Any], bundle: Path) -> dict[str, dict[str, Any]]:
    """Download every published file into ``bundle`` (network!); {model key: origin}."""
    files = bundle_files(models_cfg)
    origin: dict[str, dict[str, Any]] = {}
    for key in trunk_keys(models_cfg):
        cfg = models_cfg[key]
        if cfg["kind"] in ("timm", "open_clip"):
            repo, name = ((timm_hub_id(cfg["name"]), "model.safetensors") if cfg["kind"] == "timm"
                          else hub_file(cfg))
            commit = _hub_file(repo, name, cfg.get("revision"), bundle / files[key])
            origin[key] = {"repo": repo, "revision": commit}
        else:
            url = torchvision_weights(cfg).url
            # torchvision's file names end in the first hex digits of their sha256.
            prefix = Path(files[key]).stem.rsplit("-", 1)[-1]
            _download_url(url, bundle / files[key], hash_prefix=prefix)
            origin[key] = {"url": url}
    gd = models_cfg["grounding_dino"]
    commit = _hub_files(gd["text_encoder"], BERT_FILES, gd.get("text_encoder_revision"),
                        bundle / gd["text_encoder"])
    origin["text_encoder"] = {"repo": gd["text_encoder"], "revision": commit}
    for key in ("grounding_dino", "sam"):
        _download_url(models_cfg[key]["checkpoint_url"], bundle / files[key])
        origin[key] = {"url": models_cfg[key]["checkpoint_url"]}
    if "segformer_clothes" in models_cfg:
        cfg = models_cfg["segformer_clothes"]
        commit = _hub_files(cfg["name"], SEGFORMER_FILES, cfg.get("revision"), bundle / cfg["name"])
        origin["segformer_clothes"] = {"repo": cfg["name"], "revision": commit}
    return origin


def check_bundle(models_cfg: Mapping[str, Any], bundle: Path,
                 origin: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """{model key: {file, sha256, origin...}} of the bundle, after checking the pinned sha256s."""
    record: dict[str, dict[str, Any]] = {}
    for key, rel in bundle_files(models_cfg).items():
        path = bundle / rel
        if not path.is_file():
            raise WorkflowInputError(path, f"published weights file of {key} missing from the bundle")
        digest = sha256_file(path)
        pinned = models_cfg[key].get("checkpoint_sha256") if key in models_cfg else None
        if pinned and digest != pinned:
            raise WorkflowInputError(path, f"sha256 {digest} differs from the pinned "
                                           f"models.{key}.checkpoint_sha256 {pinned}")
        record[key] = {"file": rel, "sha256": digest, **dict((origin or {}).get(key, {}))}
    return record


def prepare_weight_cache(models_cfg: Mapping[str, Any], cache: Path | str, source: str,
                         seed: int, files_dir: Path | str | None = None) -> dict[str, str]:
    """Fill the cache with every model's weights and write the manifest last.

    ``source`` "hub" downloads the published files (login node) into a temporary bundle,
    "files" reads them from the bundle ``files_dir`` (offline), "random" writes tiny seeded
    random weights (demo). For hub and files, ``sources.json`` records each published
    file's sha256 and origin (URL, or hub repo and commit).
    The manifest is the rule's output: it only appears once every file is complete, and it
    records the sha256 of each file so that a truncated copy is noticed on the compute node.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    # Anything a library fetches through the hubs lands in the cache, where the offline
    # compute jobs (same variables, see go_offline) will find it.
    os.environ.update(hub_homes(cache))
    if source == "hub":
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
            origin = fetch_bundle(models_cfg, Path(tmp))
            return _fill(models_cfg, cache, "files", seed, Path(tmp), origin)
    if source == "files":
        if not files_dir:
            raise WorkflowInputError("weights.files", "source files needs weights.files (a folder)")
        if not Path(files_dir).is_dir():
            raise WorkflowInputError(files_dir, "weights bundle folder not found")
        return _fill(models_cfg, cache, source, seed, Path(files_dir), None)
    if source == "random":
        return _fill(models_cfg, cache, source, seed, None, None)
    raise WorkflowInputError("weights.source", f"unknown source {source!r} (hub, files or random)")


def _fill(models_cfg: Mapping[str, Any], cache: Path, source: str, seed: int,
          bundle: Path | None, origin: Mapping[str, Mapping[str, Any]] | None) -> dict[str, str]:
    files: dict[str, str] = {}
    if bundle is not None:
        # Pins first: a wrong or truncated file stops before any conversion.
        write_json(cache / SOURCES, check_bundle(models_cfg, bundle, origin))
        files[SOURCES] = sha256_file(cache / SOURCES)
    for key in trunk_keys(models_cfg):
        print(f"trunk {key}: {models_cfg[key]['name']} ({source})", file=sys.stderr)
        files.update(prepare_trunk_weights(key, models_cfg[key], cache, source, seed, bundle))
    files.update(prepare_detector_weights(dict(models_cfg), cache, source, seed, bundle))
    if "segformer_clothes" in models_cfg:
        cfg = models_cfg["segformer_clothes"]
        print(f"clothes segmenter: {cfg['name']} ({source})", file=sys.stderr)
        files.update(prepare_segformer_weights(cfg, cache, source, seed, bundle))
    for rel in files:
        if not (cache / rel).is_file():
            raise WorkflowInputError(cache / rel, "listed for the manifest but not written")
    write_json(cache / MANIFEST, dict(sorted(files.items())))
    return files



"""Filling the pretrained-weights cache, one model folder per job (the ``model_weights``
rule), once, where the network is.

With ``source: hub`` a model's published files are downloaded (only that rule, on the login
node, may do that) into a temporary weights bundle; with ``source: files`` they are read
from a bundle folder (an offline copy, or stand-ins); either way every file is checked
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

from overlearning.core.atomic import atomic_directory, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import sha256_file
from overlearning.models.bundle import (
    BERT_FILES,
    SEGFORMER_FILES,
    published_files,
    timm_hub_id,
)
from overlearning.models.cache import (
    BUILD_FILE,
    MANIFEST,
    TRUNK_FILE,
    build_record,
    hub_homes,
    model_kind,
    save_state_dict,
)
from overlearning.models.detector_weights import write_grounding_dino, write_sam
from overlearning.models.embedder import build_trunk, torchvision_weights
from overlearning.models.official import FORMATS, load_official
from overlearning.models.open_clip_trunk import hub_file
from overlearning.models.segformer import write_segformer

# Per published file of a model: its sha256 and where it came from (hub and files sources).
SOURCES = "sources.json"


def _files_state_dict(trunk_cfg: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """The trunk's state dict from its published file, checked against the published format."""
    model = build_trunk(trunk_cfg)
    load_official(path, model, FORMATS[trunk_cfg["kind"]])
    return model.state_dict()


def write_trunk(folder: Path, trunk_cfg: Mapping[str, Any], source: str, seed: int,
                published: Mapping[str, Path] | None = None) -> None:
    """A trunk's cache folder (``trunk.safetensors``, ``build.json``) in the empty ``folder``.

    ``source`` "files" reads the published weights file (the only entry of ``published``);
    "random" writes the seeded random initialisation of the architecture that ``trunk_cfg``
    (with its overrides) describes.
    """
    if source == "files":
        if not published:
            raise WorkflowInputError("weights.files", "source files needs the bundle folder")
        (path,) = published.values()
        state = _files_state_dict(trunk_cfg, Path(path))
    elif source == "random":
        torch.manual_seed(seed)
        state = build_trunk(trunk_cfg).state_dict()
    else:
        raise WorkflowInputError("weights.source", f"unknown source {source!r} (hub, files or random)")
    save_state_dict(state, folder / TRUNK_FILE)
    write_json(folder / BUILD_FILE, build_record(trunk_cfg, source, seed))


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


def fetch_published(key: str, model_cfg: Mapping[str, Any], bundle: Path) -> dict[str, dict[str, Any]]:
    """Download the published files of ``models.<key>`` into ``bundle`` (network!);
    {published name: origin}."""
    files = published_files(key, model_cfg)
    kind = model_kind(key, model_cfg)
    if kind == "trunk" and model_cfg["kind"] in ("timm", "open_clip"):
        repo, name = ((timm_hub_id(model_cfg["name"]), "model.safetensors")
                      if model_cfg["kind"] == "timm" else hub_file(model_cfg))
        commit = _hub_file(repo, name, model_cfg.get("revision"), bundle / files[key])
        return {key: {"repo": repo, "revision": commit}}
    if kind == "trunk":
        url = torchvision_weights(model_cfg).url
        # torchvision's file names end in the first hex digits of their sha256.
        prefix = Path(files[key]).stem.rsplit("-", 1)[-1]
        _download_url(url, bundle / files[key], hash_prefix=prefix)
        return {key: {"url": url}}
    if kind == "segformer_clothes":
        commit = _hub_files(model_cfg["name"], SEGFORMER_FILES, model_cfg.get("revision"),
                            bundle / model_cfg["name"])
        return {key: {"repo": model_cfg["name"], "revision": commit}}
    origin: dict[str, dict[str, Any]] = {}
    if kind == "grounding_dino":
        repo = model_cfg["text_encoder"]
        commit = _hub_files(repo, BERT_FILES, model_cfg.get("text_encoder_revision"), bundle / repo)
        origin["text_encoder"] = {"repo": repo, "revision": commit}
    _download_url(model_cfg["checkpoint_url"], bundle / files[key])
    origin[key] = {"url": model_cfg["checkpoint_url"]}
    return origin


def check_published(key: str, model_cfg: Mapping[str, Any], bundle: Path,
                    origin: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """{published name: {file, sha256, origin...}} of ``models.<key>``'s files in the bundle,
    after checking the pinned sha256 (``models.<key>.checkpoint_sha256``)."""
    record: dict[str, dict[str, Any]] = {}
    for name, rel in published_files(key, model_cfg).items():
        path = bundle / rel
        if not path.is_file():
            raise WorkflowInputError(path, f"published weights file of {name} missing from the bundle")
        digest = sha256_file(path)
        pinned = model_cfg.get("checkpoint_sha256") if name == key else None
        if pinned and digest != pinned:
            raise WorkflowInputError(path, f"sha256 {digest} differs from the pinned "
                                           f"models.{key}.checkpoint_sha256 {pinned}")
        record[name] = {"file": rel, "sha256": digest, **dict((origin or {}).get(name, {}))}
    return record


WRITERS = {"trunk": write_trunk, "grounding_dino": write_grounding_dino, "sam": write_sam}


def _write_model(folder: Path, key: str, model_cfg: Mapping[str, Any], source: str, seed: int,
                 bundle: Path | None, origin: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Every file of the model's folder except the manifest."""
    if bundle is not None:
        # Pins first: a wrong or truncated file stops before any conversion.
        write_json(folder / SOURCES, check_published(key, model_cfg, bundle, origin))
    kind = model_kind(key, model_cfg)
    print(f"{key}: {model_cfg.get('name') or model_cfg.get('config') or model_cfg.get('variant')}"
          f" ({source})", file=sys.stderr)
    if kind == "segformer_clothes":
        write_segformer(folder, model_cfg, source, seed, bundle)
        return
    published = ({name: bundle / rel for name, rel in published_files(key, model_cfg).items()}
                 if bundle is not None else None)
    WRITERS[kind](folder, model_cfg, source, seed, published)


def prepare_model_weights(key: str, model_cfg: Mapping[str, Any], cache: Path | str, source: str,
                          seed: int, files_dir: Path | str | None = None) -> dict[str, str]:
    """Write the folder ``<cache>/<key>`` of ``models.<key>`` with its manifest; return the
    manifest ({path in the folder: sha256} of every other file in it).

    ``source`` "hub" downloads the model's published files (login node) into a temporary
    bundle, "files" reads them from the bundle ``files_dir`` (offline), "random" writes tiny
    seeded random weights (demo). For hub and files, ``sources.json`` records each published
    file's sha256 and origin (URL, or hub repo and commit).
    The folder is built beside its final place and renamed into it whole, manifest
    included: an interrupted job leaves the previous folder or none, never half of one.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    # Anything a library fetches through the hubs lands in the cache, where the offline
    # compute jobs (same variables, see go_offline) will find it.
    os.environ.update(hub_homes(cache))
    model_kind(key, model_cfg)  # an unknown entry stops before any download
    if source == "files":
        if not files_dir:
            raise WorkflowInputError("weights.files", "source files needs weights.files (a folder)")
        if not Path(files_dir).is_dir():
            raise WorkflowInputError(files_dir, "weights bundle folder not found")
    elif source not in ("hub", "random"):
        raise WorkflowInputError("weights.source", f"unknown source {source!r} (hub, files or random)")
    with atomic_directory(cache / key) as folder:
        if source == "hub":
            with tempfile.TemporaryDirectory(prefix=f".download-{key}-", dir=cache) as tmp:
                origin = fetch_published(key, model_cfg, Path(tmp))
                _write_model(folder, key, model_cfg, "files", seed, Path(tmp), origin)
        else:
            _write_model(folder, key, model_cfg, source, seed,
                         Path(files_dir) if source == "files" else None, None)
        manifest = {path.relative_to(folder).as_posix(): sha256_file(path)
                    for path in sorted(folder.rglob("*")) if path.is_file()}
        write_json(folder / MANIFEST, manifest)
    return manifest


def prepare_weight_cache(models_cfg: Mapping[str, Any], cache: Path | str, source: str,
                         seed: int, files_dir: Path | str | None = None) -> dict[str, dict[str, str]]:
    """Every model of ``models_cfg`` in its own folder of ``cache``; {key: its manifest}.
    (The workflow runs one ``model_weights`` job per model instead.)"""
    return {key: prepare_model_weights(key, models_cfg[key], cache, source, seed, files_dir)
            for key in sorted(models_cfg)}

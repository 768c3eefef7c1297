"""Embedding sets: one model's vectors for one evaluation set, computed once and cached as .npz.

Every metric and figure reads these files, so turning index exclusion on or off (or adding
a new evaluation over the same images) never runs a model again. A set's `.npz` holds
``embeddings`` (float32, N x d, raw model outputs), ``labels`` (int64), ``files`` (str,
relative names, sorted), ``persons`` (bool) and ``cameras`` (int64, -1 where unknown), see
docs/architecture.md.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import open_pack
from overlearning.core.precision import precision_context
from overlearning.data.crop_sets import CROP_PACK, Item, load_crop_set, load_person_set

NPZ_KEYS = ("embeddings", "labels", "files", "persons", "cameras")
Subset = Literal["all", "persons", "nonpersons"]
# A fixed timestamp inside the zip container: the same arrays always give the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class EmbeddingSet:
    embeddings: np.ndarray  # float32 (N, d)
    labels: np.ndarray      # int64 (N,)
    files: np.ndarray       # str (N,)
    persons: np.ndarray     # bool (N,)
    cameras: np.ndarray     # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> EmbeddingSet:
        return EmbeddingSet(self.embeddings[mask], self.labels[mask], self.files[mask],
                            self.persons[mask], self.cameras[mask])

    def subset(self, which: Subset) -> EmbeddingSet:
        if which == "all":
            return self
        if which == "persons":
            return self.select(self.persons)
        if which == "nonpersons":
            return self.select(~self.persons)
        raise ValueError(f"unknown subset {which!r} (all, persons, nonpersons)")


def concatenate(sets: Sequence[EmbeddingSet]) -> EmbeddingSet:
    dims = {s.embeddings.shape[1] for s in sets if len(s)}
    if len(dims) > 1:
        raise ValueError(f"embedding sets of different dimensions {sorted(dims)}")
    return EmbeddingSet(*(np.concatenate([getattr(s, key) for s in sets]) for key in NPZ_KEYS))


def embedding_set_from_items(items: Sequence[Item], embeddings: np.ndarray) -> EmbeddingSet:
    if len(items) != len(embeddings):
        raise ValueError(f"{len(items)} items but {len(embeddings)} embeddings")
    return EmbeddingSet(
        embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
        labels=np.array([it.label for it in items], dtype=np.int64),
        files=np.array([it.name for it in items], dtype=str),
        persons=np.array([it.is_person for it in items], dtype=bool),
        cameras=np.array([it.camera for it in items], dtype=np.int64),
    )


def save_embedding_set(path: Path | str, data: EmbeddingSet) -> None:
    """Write the set as an uncompressed .npz, atomically and byte-reproducibly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            for key in NPZ_KEYS:
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.asarray(getattr(data, key)),
                                          allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE),
                                 buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_embedding_set(path: Path | str) -> EmbeddingSet:
    """Read and check an embedding .npz; anything malformed stops with the file's path."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowInputError(path, "embedding file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise WorkflowInputError(path, f"embedding file lacks {', '.join(missing)}")
            arrays = {key: npz[key] for key in NPZ_KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WorkflowInputError(path, f"not a readable .npz ({exc})") from None
    emb = arrays["embeddings"]
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise WorkflowInputError(path, f"embeddings must be a float N x d array, got {emb.dtype} {emb.shape}")
    sizes = {key: len(arrays[key]) for key in NPZ_KEYS}
    if len(set(sizes.values())) != 1:
        raise WorkflowInputError(path, f"arrays of different lengths {sizes}")
    if not np.isfinite(emb).all():
        raise WorkflowInputError(path, "embeddings contain NaN or infinity")
    kinds = {"labels": ("iu", "integers"), "cameras": ("iu", "integers"),
             "persons": ("b", "booleans"), "files": ("U", "strings")}
    for key, (codes, what) in kinds.items():
        array = arrays[key]
        if array.ndim != 1 or array.dtype.kind not in codes:
            raise WorkflowInputError(path, f"{key}: expected a 1-d array of {what}, found "
                                           f"{array.dtype} {array.shape}")
    return EmbeddingSet(
        embeddings=emb.astype(np.float32, copy=False),
        labels=arrays["labels"].astype(np.int64, copy=False),
        files=arrays["files"].astype(str),
        persons=arrays["persons"].astype(bool, copy=False),
        cameras=arrays["cameras"].astype(np.int64, copy=False),
    )


def items_for_set(kind: Literal["crops", "pack"], source: Path | str,
                  person_category: int | None = None,
                  delta: Path | str | None = None) -> list[Item]:
    """The images of one embedding set, in the sorted order every consumer uses.

    ``crops``: a VIS/OVIS split directory (its ``fg_instances_cropped.json`` decides who is a
    person, its ``foregroundImages_cropped.zip`` holds the crops); ``pack``: a person query,
    gallery or probe pack (every image is a person). ``delta``: an anonymised variant's
    changed images, read in place of the source's (overlearning/core/packs.py overlays).
    """
    if kind == "crops":
        if person_category is None:
            raise ValueError("crop sets need the dataset's person category id")
        images = open_pack(Path(source) / CROP_PACK)
        if delta is not None:
            images = open_pack(delta, base=images)
        return load_crop_set(source, person_category, "all", images=images)
    if kind == "pack":
        return load_person_set(open_pack(source) if delta is None
                               else open_pack(delta, base=source))
    raise ValueError(f"unknown set kind {kind!r} (crops, pack)")


class _ImageDataset(Dataset):
    def __init__(self, items: Sequence[Item], transform) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.items[index].read_rgb()))


def embed_items(model: nn.Module, items: Sequence[Item], batch_size: int,
                device: str = "cpu", num_workers: int = 0, precision: str = "fp32") -> np.ndarray:
    """Run the model once over every image (its own ``.transform``), in item order.

    ``num_workers`` loader processes decode and transform images while the model runs
    (order is kept: the loader does not shuffle); on CUDA batches come from pinned memory
    and are copied asynchronously. ``precision`` is applied as given (bf16 autocast, TF32
    or fp32, see overlearning.core.precision; callers pass ``precision_for(device, ...)``
    so that a CPU stays at fp32). Embeddings are returned as float32 whatever the precision.
    """
    if not items:
        raise WorkflowInputError("<embedding set>", "no images to embed")
    transform = getattr(model, "transform", None)
    if transform is None:
        raise TypeError("the embedding model must carry its eval transform as .transform")
    on_cuda = torch.device(device).type == "cuda"
    loader = DataLoader(_ImageDataset(items, transform), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, pin_memory=on_cuda,
                        persistent_workers=False,
                        prefetch_factor=4 if num_workers > 0 else None)
    model = model.to(device).eval()
    chunks: list[torch.Tensor] = []
    with torch.inference_mode(), precision_context(device, precision):
        for batch in tqdm(loader, desc="embed", unit="batch", file=sys.stderr):
            out = model(batch.to(device, non_blocking=on_cuda))
            # Stay on the device: one copy at the end instead of a sync per batch.
            chunks.append(out.float())
    embeddings = torch.cat(chunks).cpu().numpy()
    if not np.isfinite(embeddings).all():
        raise RuntimeError("the model produced NaN or infinite embeddings")
    return embeddings

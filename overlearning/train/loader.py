"""A torch Dataset over the labelled crops of overlearning.data.crop_sets, and the sampler for training.

Crops are read from their pack (one file per set): each loader worker opens it once, so an
epoch opens as many files per worker as there are packs, not one per crop.

The sampler is pytorch-metric-learning's MPerClassSampler (m crops of each object, one
pass of all objects after another) driven by its own seeded random state, so that an
epoch's order is reproducible, can be saved in a checkpoint and is the same on every rank
of a distributed job; each rank then takes its slice of every global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as c_f
from torch.utils.data import Dataset, Sampler

from overlearning.data.crop_sets import Item


def load_image(item: Item) -> Image.Image:
    """An RGB PIL image of a pack member; a missing or corrupt one stops naming pack and member."""
    return item.open_image().convert("RGB")


class CropDataset(Dataset):
    """(image tensor, label) pairs for a list of crop_sets Items, in the given order."""

    def __init__(self, items: Sequence[Item], transform: Callable[[Image.Image], torch.Tensor]):
        self.items = list(items)
        self.transform = transform
        self.labels = np.array([item.label for item in self.items], dtype=np.int64)
        self.is_person = np.array([item.is_person for item in self.items], dtype=bool)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        return self.transform(load_image(item)), int(self.labels[index])

    def person_labels(self) -> list[int]:
        return sorted({int(x) for x in self.labels[self.is_person]})


def _numpy_state(rng: np.random.RandomState) -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = rng.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(rng: np.random.RandomState, state: dict[str, Any]) -> None:
    rng.set_state((state["kind"], state["keys"].numpy().astype(np.uint32), state["pos"],
                   state["has_gauss"], state["gauss"]))


class MPerClassEpochSampler(Sampler[int]):
    """MPerClassSampler(labels, m, length_before_new_iter=length), seeded and rank-sliced.

    Every rank draws the same global order (same seed) and keeps, of each global batch of
    ``batch_size`` indices, the ``batch_size // world_size`` that belong to it; incomplete
    global batches are dropped. With one rank it is MPerClassSampler with its own RNG.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, m: int, length: int,
                 batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % (m * world_size):
            raise ValueError(f"batch size {batch_size} is not a multiple of m ({m}) x "
                             f"processes ({world_size})")
        self.inner = MPerClassSampler(np.asarray(labels), m=m, length_before_new_iter=length)
        self.rng = np.random.RandomState(seed)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def _global_length(self) -> int:
        # MPerClassSampler fills whole passes over all labels; a single pass longer than
        # the requested length overflows it (its list grows to the pass).
        single_pass = self.inner.length_of_single_pass
        size = self.inner.list_size
        return size if single_pass < size else max(size, single_pass)

    def __len__(self) -> int:
        return self._global_length() // self.batch_size * (self.batch_size // self.world_size)

    def __iter__(self) -> Iterator[int]:
        previous = c_f.NUMPY_RANDOM
        c_f.NUMPY_RANDOM = self.rng
        try:
            order = [int(i) for i in iter(self.inner)]
        finally:
            c_f.NUMPY_RANDOM = previous
        local = self.batch_size // self.world_size
        mine: list[int] = []
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            offset = start + self.rank * local
            mine.extend(order[offset:offset + local])
        return iter(mine)

    def state_dict(self) -> dict[str, Any]:
        labels = torch.tensor([int(x) for x in self.inner.labels], dtype=torch.long)
        return {"rng": _numpy_state(self.rng), "labels": labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_numpy_state(self.rng, state["rng"])
        # The inner sampler shuffles its label list in place: its order is state too.
        self.inner.labels = [int(x) for x in state["labels"].tolist()]

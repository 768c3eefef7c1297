"""The k-reciprocal attacker's neighbour graph input: every item's nearest items and its
farthest distance, computed for one evaluation or once for a group of evaluations.

k-reciprocal re-ranking (overlearning.evaluate.rerank) reads two things about each item of
an evaluation (its queries, then its kept references): the ``width`` nearest items by
(squared L2 distance, item index), itself included, and the squared distance to its
farthest item. Each is an (n_items)^2 x dim pass. The evaluations of one metrics job rank
subsets of the same vectors: YouTube-VIS test persons and non-persons, with and without
index exclusion, against OVIS test, and the same with each anonymised copy of the query
set. At the published counts an evaluation holds about 243,000 items, so a job that builds
each evaluation's lists on its own repeats two such passes 4 times (``metrics``) or 12
times (``metrics_anonymised``).

:class:`SharedLists` runs the passes once over the distinct vectors of a group of
evaluations (their *union*), with ``slack`` more neighbours than an evaluation reads and
the ``far`` farthest candidates of each vector, and derives each evaluation's lists from
them. An item's neighbours are its union neighbours that the evaluation holds, each as
many times as the evaluation holds that vector (a vector that is both a query and a
reference is two items at the same distance), in (distance, item index) order. They are
exact wherever the evaluation keeps ``width`` of them strictly closer than the union
list's last distance (nothing beyond the list can come before them); its farthest item is
the first of the union's farthest candidates that the evaluation holds. Items where either
fails (too many of their union neighbours, or all of their farthest candidates, are not in
the evaluation) are computed directly against the evaluation's items, so the lists equal
:func:`direct_lists` in every case.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from overlearning.evaluate.ranking import _full_fp32, default_device, nearest_references

# Elements of one block's dense (block, n_items) similarity matrix.
_BLOCK_ELEMENTS = 1 << 22
# Union rows expanded at once when an evaluation's lists are derived (bounds the memory of
# the (rows x fetch) expansion to a few hundred MB at the published counts).
_DERIVE_ROWS = 1 << 15


def squared_distances(items: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Squared L2 distance of items[rows[t]] and items[cols[t]] in float64, directly (sum of
    squared differences: no cancellation near 0), a block of pairs at a time (gathering
    every pair's two vectors at once would take pairs x dim x 16 bytes: 5 GB at
    Market-1501 size)."""
    out = np.empty(len(rows))
    step = max(1, (1 << 22) // max(items.shape[1], 1))
    for start in range(0, len(rows), step):
        diff = (items[rows[start:start + step]].astype(np.float64)
                - items[cols[start:start + step]])
        out[start:start + step] = np.einsum("ij,ij->i", diff, diff)
    return out


def farthest(queries: np.ndarray, items: np.ndarray, device: str, count: int = 1
             ) -> np.ndarray:
    """(n_queries, count) indices of each query's farthest items (lowest cosine first), by
    blocked float32 GEMM; their distances are recomputed exactly by the caller (only the
    value is used, not the order of ties)."""
    dev = torch.device(device)
    x = torch.as_tensor(np.ascontiguousarray(items)).to(dev)
    qs = torch.as_tensor(np.ascontiguousarray(queries))
    count = min(count, len(items))
    out = np.empty((len(queries), count), dtype=np.int64)
    step = max(1, _BLOCK_ELEMENTS // max(len(items), 1))
    with torch.inference_mode(), _full_fp32(dev):  # TF32 could pick a nearer item
        for start in range(0, len(queries), step):
            sims = qs[start:start + step].to(dev) @ x.T
            if count == 1:
                found = sims.argmin(dim=1, keepdim=True)
            else:
                found = torch.topk(sims, count, dim=1, largest=False, sorted=True).indices
            out[start:start + step] = found.cpu().numpy()
    return out


def direct_lists(items: np.ndarray, width: int, device: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours (n, width), row_max (n,)) of one evaluation's items, from its own two
    passes: the ``width`` nearest items by (distance, index), itself included (at distance
    0, first), and the squared distance to the farthest item."""
    dev = device or default_device()
    n = len(items)
    neighbours = nearest_references(items, items, width, dev)
    row_max = squared_distances(items, np.arange(n), farthest(items, items, dev)[:, 0])
    return neighbours, row_max


def _row_keys(vectors: np.ndarray) -> np.ndarray:
    """One opaque value per row with the row's bytes: equal keys, equal vectors."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


@dataclass
class SharedLists:
    """Nearest and farthest lists of a group's distinct vectors, from which each
    evaluation's lists are derived (see the module docstring).

    ``vectors``: every vector any evaluation of the group may hold, L2-normalised as the
    evaluations normalise them (duplicates are merged), or a function that returns them
    (called on first use, as are the passes).
    """
    vectors: np.ndarray | Callable[[], np.ndarray]
    device: str | None = None
    slack: int = 48
    far: int = 8
    label: str = ""
    _union: np.ndarray | None = field(default=None, repr=False)
    _keys: np.ndarray | None = field(default=None, repr=False)
    _near: np.ndarray | None = field(default=None, repr=False)
    _near_d: np.ndarray | None = field(default=None, repr=False)
    _far: np.ndarray | None = field(default=None, repr=False)
    derived: int = 0    # items whose lists came from the union lists
    recomputed: int = 0  # items computed directly (union lists not enough)

    def _unite(self) -> None:
        if self._union is None:
            vectors = self.vectors() if callable(self.vectors) else self.vectors
            keys, first = np.unique(_row_keys(vectors), return_index=True)
            self._keys = keys
            self._union = np.ascontiguousarray(vectors[first], dtype=np.float32)
            self.vectors = self._union  # the duplicates are no longer needed

    def locate(self, items: np.ndarray) -> np.ndarray:
        """Union row of each item, -1 where the union does not hold the vector."""
        self._unite()
        assert self._keys is not None
        keys = _row_keys(items)
        if not len(self._keys):
            return np.full(len(items), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[pos] == keys, pos, -1).astype(np.int64)

    def _build(self, width: int) -> None:
        union = self._union
        assert union is not None
        n_u = len(union)
        fetch = min(width + self.slack, n_u)
        if self._near is not None and self._near.shape[1] >= fetch:
            return
        dev = self.device or default_device()
        print(f"neighbour lists of {n_u} distinct vectors for "
              f"{self.label or 'a group of evaluations'}", file=sys.stderr, flush=True)
        self._near = nearest_references(union, union, fetch, dev)
        rows = np.repeat(np.arange(n_u), fetch)
        self._near_d = squared_distances(union, rows, self._near.ravel()).reshape(n_u, fetch)
        self._far = farthest(union, union, dev, self.far)

    def lists(self, items: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(neighbours, row_max) of an evaluation's items, equal to
        ``direct_lists(items, width)``."""
        dev = self.device or default_device()
        where = self.locate(items)
        if len(items) == 0 or (where < 0).any():
            self.recomputed += len(items)
            return direct_lists(items, width, dev)
        self._build(width)
        assert self._near is not None and self._near_d is not None and self._far is not None
        n_u = len(self._near)
        # The evaluation's items grouped by union row, ascending item index within a row.
        by_row = np.argsort(where, kind="stable")
        counts = np.bincount(where, minlength=n_u)
        starts = np.cumsum(counts) - counts
        held = np.flatnonzero(counts)            # union rows the evaluation holds
        neighbours = np.full((len(held), width), -1, dtype=np.int64)
        exact = np.zeros(len(held), dtype=bool)
        complete = self._near.shape[1] == n_u     # the lists cover the whole union
        for lo in range(0, len(held), _DERIVE_ROWS):
            rows = held[lo:lo + _DERIVE_ROWS]
            block, ok = self._derive(rows, counts, starts, by_row, width, complete)
            neighbours[lo:lo + len(rows)] = block
            exact[lo:lo + len(rows)] = ok
        # Farthest: the first candidate the evaluation holds (the union's order is the
        # evaluation's order: both by cosine), its distance recomputed exactly.
        candidates = self._far[held]
        present = counts[candidates] > 0
        first = candidates[np.arange(len(held)), np.argmax(present, axis=1)]
        has_far = present.any(axis=1)
        row_max = squared_distances(self._union, held, first)

        slot = np.searchsorted(held, where)       # each item's row among `held`
        out_neighbours = neighbours[slot]
        out_max = row_max[slot]
        redo = np.flatnonzero(~exact[slot])
        if len(redo):
            out_neighbours[redo] = nearest_references(items[redo], items, width, dev)
        redo_far = np.flatnonzero(~has_far[slot])
        if len(redo_far):
            far = farthest(items[redo_far], items, dev)[:, 0]
            out_max[redo_far] = squared_distances(items, redo_far, far)
        self.recomputed += len(np.union1d(redo, redo_far))
        self.derived += len(items) - len(np.union1d(redo, redo_far))
        return out_neighbours, out_max

    def _derive(self, rows: np.ndarray, counts: np.ndarray, starts: np.ndarray,
                by_row: np.ndarray, width: int, complete: bool
                ) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour lists (item indices) of the union ``rows`` and whether each is exact."""
        assert self._near is not None and self._near_d is not None
        near, near_d = self._near[rows], self._near_d[rows]
        fetch = near.shape[1]
        copies = counts[near].ravel()           # items per union neighbour
        total = int(copies.sum())
        row = np.repeat(np.repeat(np.arange(len(rows)), fetch), copies)
        dist = np.repeat(near_d.ravel(), copies)
        first = np.cumsum(copies) - copies
        item = by_row[np.repeat(starts[near.ravel()], copies)
                      + np.arange(total) - np.repeat(first, copies)]
        order = np.lexsort((item, dist, row))
        row, dist, item = row[order], dist[order], item[order]
        slot = np.arange(total) - np.searchsorted(row, np.arange(len(rows)))[row]
        take = slot < width
        out = np.full((len(rows), width), -1, dtype=np.int64)
        out[row[take], slot[take]] = item[take]
        last = np.full(len(rows), -np.inf)
        at_width = slot == width - 1
        last[row[at_width]] = dist[at_width]
        enough = np.bincount(row, minlength=len(rows)) >= width
        ok = enough & ((last < near_d[:, -1]) | complete)
        return out, ok


def group_evaluations(files: Sequence[Sequence[str]]) -> list[int]:
    """Group id of each evaluation: evaluations that read a common embedding file (directly
    or through others) share a group, numbered by first appearance."""
    parent = list(range(len(files)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, names in enumerate(files):
        for name in names:
            if name in owner:
                parent[root(i)] = root(owner[name])
            else:
                owner[name] = i
    roots = [root(i) for i in range(len(files))]
    numbers: dict[int, int] = {}
    return [numbers.setdefault(r, len(numbers)) for r in roots]


def shared_by_group(files: Sequence[Sequence[str]], load: Callable[[str], np.ndarray],
                    device: str | None = None) -> list[SharedLists | None]:
    """Per evaluation (given the embedding files it reads), the :class:`SharedLists` of its
    group, or None where it is the group's only evaluation (its own passes cost the same).
    ``load`` gives a file's vectors, normalised as the evaluations normalise them; a
    group's files are read when its lists are first asked for."""
    groups = group_evaluations(files)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out: list[SharedLists | None] = [None] * len(files)
    for evaluations in members.values():
        if len(evaluations) < 2:
            continue
        names = sorted({name for i in evaluations for name in files[i]})
        def vectors(names: list[str] = names) -> np.ndarray:
            return np.concatenate([load(name) for name in names])

        shared = SharedLists(vectors, device,
                             label=f"{len(evaluations)} evaluations over {len(names)} "
                                   f"embedding files, {Path(names[0]).name} first")
        for i in evaluations:
            out[i] = shared
    return out

"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) from k-nearest lists, exclusion-aware.

The published implementation (torchreid ``utils/rerank.py``, fast-reid, the authors' own)
holds the full (n_q + n_g)^2 distance matrix, its argsort and two dense (n_q + n_g)^2 weight
matrices. Only the k1 + 1 nearest items of each item are ever read, so this builds the same
quantities from neighbour lists:

- items: the queries, then the *kept* references (an excluded reference is not an item: the
  operator's index does not hold it, so it cannot be a neighbour, a reciprocal neighbour or
  part of an expanded neighbourhood);
- d(i, j): squared L2 distance of the L2-normalised embeddings (2 - 2 cos), i.e. what
  torchreid's ``np.power(dist, 2)`` makes of Euclidean distances, divided by the largest
  distance of item i to any item (torchreid's column maximum after its transpose);
- R(i): the k-reciprocal neighbours among the k1 + 1 nearest (the item itself included),
  expanded by every R'(c) (k = round(k1 / 2)) of c in R(i) that shares more than 2/3 of
  its members with R(i);
- V(i, .): exp(-d(i, e)) over the expanded set, normalised to sum 1; then local query
  expansion: V(i) <- mean of V over the k2 nearest items of i;
- Jaccard distance 1 - sum min(V_q, V_g) / (2 - sum min(V_q, V_g)), and the final distance
  (1 - lambda) Jaccard + lambda d(q, g).

Neighbour lists and farthest distances come from overlearning.evaluate.item_lists (the
blocked exact GEMM search, on CUDA when present, once per evaluation or once for a group
of evaluations over the same vectors); the sparse parts are scipy sparse
matrices; the query x gallery distances are produced a block of queries at a time, so the
memory is O((n_q + n_g) k1 k2 k1) for the graph plus one block, never (n_q + n_g)^2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from overlearning.evaluate.item_lists import SharedLists, direct_lists, squared_distances
from overlearning.evaluate.ranking import _full_fp32, default_device

# Elements of one query block's dense (block, n_g) output.
_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class KReciprocal:
    """The published parameters (Zhong et al. 2017; torchreid's and fast-reid's defaults)."""
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    @classmethod
    def from_settings(cls, settings: Mapping) -> KReciprocal:
        return cls(int(settings["k1"]), int(settings["k2"]), float(settings["lambda"]))


def _reciprocal(neighbours: np.ndarray, width: int) -> np.ndarray:
    """(n, width) bool: neighbour j of item i (among its first ``width``) has i among its
    own first ``width``."""
    first = neighbours[:, :width]
    out = np.empty(first.shape, dtype=bool)
    step = max(1, (1 << 22) // (width * width))
    for start in range(0, len(first), step):
        back = first[first[start:start + step]]  # (block, width, width)
        own = np.arange(start, start + len(back))[:, None, None]
        out[start:start + step] = (back == own).any(axis=2)
    return out


def _expanded_sets(neighbours: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of every (item, member of its expanded k-reciprocal set), each pair
    once, rows ascending."""
    n = len(neighbours)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    width = min(k1 + 1, neighbours.shape[1])
    half = min(int(np.around(k1 / 2.0)) + 1, neighbours.shape[1])
    recip = _reciprocal(neighbours, width)            # R(i) as a mask over the first `width`
    recip_half = _reciprocal(neighbours, half)        # R'(c) as a mask over the first `half`
    forward = neighbours[:, :width]
    r_sets = np.where(recip, forward, -1)             # members of R(i), -1 elsewhere
    sizes_half = recip_half.sum(axis=1)
    rows_out, cols_out = [], []
    step = max(1, (1 << 22) // (width * half * width))
    for start in range(0, n, step):
        stop = min(start + step, n)
        cand = forward[start:stop]                                       # (b, width)
        cand_ok = recip[start:stop]
        members = neighbours[cand, :half]                                # (b, width, half)
        members_ok = recip_half[cand]                                    # (b, width, half)
        in_r = (members[..., None] == r_sets[start:stop, None, None, :]).any(axis=3)
        shared = (in_r & members_ok).sum(axis=2)                         # (b, width)
        joins = cand_ok & (shared > 2.0 / 3.0 * sizes_half[cand])
        extra = np.where((joins[..., None] & members_ok), members, -1).reshape(stop - start, -1)
        both = np.concatenate([r_sets[start:stop], extra], axis=1)
        both = np.sort(both, axis=1)
        keep = both >= 0
        keep[:, 1:] &= both[:, 1:] != both[:, :-1]
        r, c = np.nonzero(keep)
        rows_out.append(r + start)
        cols_out.append(both[r, c])
    return np.concatenate(rows_out), np.concatenate(cols_out)


@dataclass
class ReRanked:
    """The re-ranked query x reference distances of one evaluation, produced by blocks."""
    queries: np.ndarray         # (n_q, dim) float32, L2-normalised
    references: np.ndarray      # (n_r, dim) float32, L2-normalised, every reference
    kept: np.ndarray            # (n_r,) bool
    row_max: np.ndarray         # (n_items,) float64: largest squared distance of each item
    vectors: sp.csr_matrix      # (n_items, n_items): V after local query expansion
    gallery_columns: sp.csr_matrix  # V restricted to gallery items, transposed (l -> gallery)
    params: KReciprocal
    device: str = "cpu"
    _gallery: torch.Tensor | None = None  # kept references in float64, on the device

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    def _original(self, start: int, stop: int) -> np.ndarray:
        """Squared distances of queries start..stop to the kept references, each row divided
        by the query's largest distance to any item: |q|^2 + |g|^2 - 2 q.g in float64 (errors
        near 1e-15, far below the 1e-5 the comparison with the published code needs), the
        GEMM on the search's device."""
        dev = torch.device(self.device)
        if self._gallery is None:
            self._gallery = torch.as_tensor(
                self.references[self.kept].astype(np.float64)).to(dev)
        g = self._gallery
        q = torch.as_tensor(self.queries[start:stop].astype(np.float64)).to(dev)
        with torch.inference_mode(), _full_fp32(dev):
            original = torch.addmm((g * g).sum(1)[None, :] + (q * q).sum(1)[:, None], q, g.T,
                                   beta=1, alpha=-2).clamp_min_(0)
        out = original.cpu().numpy()
        out /= self.row_max[start:stop, None]
        return out

    def rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, n_r) float64 re-ranked distances of queries start..stop to every
        reference; +inf at excluded references (they are not in the index)."""
        stop = min(stop, self.n_queries)
        kept_positions = np.flatnonzero(self.kept)
        n_g = len(kept_positions)
        original = self._original(start, stop)
        shared = self._shared(start, stop, n_g)
        jaccard = 1.0 - shared / (2.0 - shared)
        lam = self.params.lambda_value
        out = np.full((stop - start, len(self.kept)), np.inf)
        out[:, kept_positions] = jaccard * (1.0 - lam) + original * lam
        return out

    def _shared(self, start: int, stop: int, n_g: int) -> np.ndarray:
        """sum_l min(V[q, l], V[g, l]) for queries start..stop and every gallery item."""
        block = self.vectors[start:stop].tocoo()
        cols = self.gallery_columns
        counts = np.diff(cols.indptr)[block.col]
        total = int(counts.sum())
        out = np.zeros((stop - start) * n_g)
        if total:
            # Entry t of the expansion: column l's (t - offset)-th gallery entry.
            offsets = np.repeat(np.cumsum(counts) - counts, counts)
            positions = np.repeat(cols.indptr[block.col], counts) + np.arange(total) - offsets
            gallery = cols.indices[positions]
            values = np.minimum(np.repeat(block.data, counts), cols.data[positions])
            flat = np.repeat(block.row.astype(np.int64), counts) * n_g + gallery
            out = np.bincount(flat, weights=values, minlength=(stop - start) * n_g)
        return out.reshape(stop - start, n_g)

    def block_size(self) -> int:
        return max(1, _BLOCK_ELEMENTS // max(int(self.kept.sum()), 1))


def k_reciprocal(queries: np.ndarray, references: np.ndarray, kept: np.ndarray,
                 params: KReciprocal = KReciprocal(), device: str | None = None,
                 shared: SharedLists | None = None) -> ReRanked:
    """Build the re-ranking of L2-normalised ``queries`` against the kept ``references``.

    The items are the queries followed by the kept references (the query set takes part in
    the neighbour graph, as in every published use); an excluded reference is no item.
    ``shared``: nearest and farthest lists of a group of evaluations holding these vectors
    (overlearning.evaluate.item_lists); the result is the same, the two passes over the
    items are then not repeated for every evaluation of the group.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    references = np.ascontiguousarray(references, dtype=np.float32)
    kept = np.asarray(kept, dtype=bool)
    items = np.concatenate([queries, references[kept]])
    n, n_q = len(items), len(queries)
    if params.k2 > params.k1 + 1:
        raise ValueError("k2 must not exceed k1 + 1 (local expansion reads the k1 + 1 nearest)")
    dev = device or default_device()
    # The k1 + 1 nearest of every item, itself included (at distance 0, first), by
    # (distance, index): the published argsort's order wherever distances differ; and the
    # distance to the farthest item.
    width = min(params.k1 + 1, n)
    if shared is not None:
        neighbours, row_max = shared.lists(items, width)
    else:
        neighbours, row_max = direct_lists(items, width, dev)
    row_max[row_max == 0] = 1.0  # a single item, or all identical: nothing to scale

    rows, cols = _expanded_sets(neighbours, params.k1)
    weights = np.exp(-squared_distances(items, rows, cols) / row_max[rows])
    totals = np.bincount(rows, weights=weights, minlength=n)
    vectors = sp.csr_matrix((weights / totals[rows], (rows, cols)), shape=(n, n))
    if params.k2 != 1:
        k2 = min(params.k2, neighbours.shape[1])
        spread = sp.csr_matrix(
            (np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2),
                                        neighbours[:, :k2].reshape(-1))), shape=(n, n))
        vectors = (spread @ vectors).tocsr()
    vectors.sort_indices()
    gallery_columns = vectors[n_q:].T.tocsr()
    gallery_columns.sort_indices()
    return ReRanked(queries, references, kept, row_max, vectors, gallery_columns, params,
                    str(torch.device(dev)))

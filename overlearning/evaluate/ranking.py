"""Nearest-neighbour rankings by cosine similarity, with index exclusion, exact and fast.

Embeddings are L2-normalised and ranked by squared L2 distance exactly as
pytorch-metric-learning's ``InferenceModel`` + ``AccuracyCalculator`` do with
``faiss.IndexFlatL2``: distance ``|q|^2 + |r|^2 - 2 q.r`` in float32, clamped at 0, ties
broken by the smaller reference index (FAISS's heap compares ids when distances are equal).
Index exclusion searches the kept references only (a boolean mask, no loop over results):
an excluded item can never be returned, and the ranking equals a search over the reference
set with the excluded items deleted.

The search itself is ours rather than FAISS's: blocks of queries go through one float32
GEMM (``addmm``) each, and the k nearest per row are selected by threshold + stable sort
instead of FAISS's per-row heap, which at k ~ 100 costs several times the GEMM on a CPU.
On a CPU the threshold comes from every 8th reference (cheap; rows where it turns out too
tight fall back to an exact k-th value); on CUDA from ``torch.topk``. Either way every
reference at or below the threshold is a candidate, so ties at the k-th place are never
cut arbitrarily, and the stable sort gives the (distance, index) order. The same code
runs on both devices; on CUDA the GEMM is forced to full float32 (no TF32), which would
otherwise reorder near neighbours. ``backend="faiss"`` keeps the FAISS search for
comparison (benchmarks, tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import faiss
import numpy as np
import torch

MISSING = -1  # index value for "no further reference" in a ranking row
Backend = Literal["torch", "faiss"]

# Elements of one block's distance matrix: CPU blocks stay near the cache sizes (the
# elementwise passes over the block are then cheap); a GPU takes big blocks.
_BLOCK_ELEMENTS = {"cpu": 1 << 22, "cuda": 1 << 28}
# CPU threshold: the r-th smallest distance among every _STRIDE-th reference, with r chosen
# so that about _SLACK x fetch references fall below it on average.
_STRIDE = 8
_SLACK = 1.25
# FAISS computes distances directly, sum((q - r)^2), while n_queries * dim is below this
# (faiss.cvar.distance_compute_blas_threshold in faiss 1.15), through a GEMM above it.
DIRECT_BELOW = 128_000
# Rounding allowance of a float32 GEMM distance |q|^2 + |r|^2 - 2 q.r: _ROUNDING x
# 2^-24 (2 sqrt(dim) |q| |r| + 4 (|q|^2 + |r|^2)), several times the typical error of a
# float32 dot product of length dim plus that of the norms (3.2e-6 for 512-d unit
# vectors, where the largest error measured over 400k pairs was 6e-7). Sorted candidates
# closer than this to a neighbour get their distance recomputed directly, so near ties are
# ordered by the accurate distance and exact ties by index; the candidate threshold is
# widened by the same amount.
_ROUNDING = 1.0


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise unit length, as torch.nn.functional.normalize (which PML uses)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(tensor, p=2, dim=1).numpy()


def set_threads(threads: int | None) -> None:
    if threads:
        faiss.omp_set_num_threads(int(threads))
        torch.set_num_threads(int(threads))


def _block_elements(device: torch.device) -> int:
    return _BLOCK_ELEMENTS.get(device.type, _BLOCK_ELEMENTS["cuda"])


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _full_fp32(device: torch.device) -> Iterator[None]:
    """Full float32 matmuls on CUDA for the block (TF32 would change the order of near ties)."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _direct(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Squared distances of matching rows of q and r, as sum((q - r)^2) (no cancellation)."""
    return (q - r).square_().sum(-1)


def _candidates(dist: torch.Tensor, fetch: int, margin: torch.Tensor, sampled: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, columns, counts per row) of the entries of ``dist`` that a row's ``fetch``
    nearest can be among: at least ``fetch`` per row, and every entry within ``margin``
    above the row's ``fetch``-th smallest value (so no tie at the boundary is cut).
    Columns ascend within a row."""
    def exact(d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        kth = torch.topk(d, fetch, dim=1, largest=False, sorted=False).values.amax(1, keepdim=True)
        return d <= kth + m

    if not sampled or dist.shape[1] < 4 * _STRIDE * fetch:
        mask = exact(dist, margin)
    else:
        sample = dist[:, ::_STRIDE]
        rank = min(sample.shape[1], int(np.ceil(_SLACK * fetch / _STRIDE)) + 4)
        threshold = torch.topk(sample, rank, dim=1, largest=False, sorted=False).values.amax(
            1, keepdim=True)
        mask = dist <= threshold + margin
    rows, cols = mask.nonzero(as_tuple=True)  # row-major: columns ascend within a row
    counts = torch.bincount(rows, minlength=len(dist))
    short = (counts < fetch).nonzero().flatten()
    if len(short):  # rare: the sample's quantile was too tight for these rows
        mask[short] = exact(dist[short], margin[short])
        rows, cols = mask.nonzero(as_tuple=True)
        counts = torch.bincount(rows, minlength=len(dist))
    return rows, cols, counts


def _settle_near_ties(q: torch.Tensor, refs: torch.Tensor, values: torch.Tensor,
                      columns: torch.Tensor, margin: torch.Tensor) -> None:
    """Reorder, in place, runs of sorted candidates whose GEMM distances lie closer than
    the rounding margin: their order is not settled by the GEMM. Only their distances are
    recomputed, directly and in float64 (float32 cannot order gaps of one ulp), and each run
    is sorted by (distance, index) within its own slots; every other candidate is already
    in its place."""
    close = (values[:, 1:] - values[:, :-1]) < margin  # gap before slot j + 1
    near = torch.zeros_like(values, dtype=torch.bool)
    near[:, 1:] |= close
    near[:, :-1] |= close
    rows, slots = near.nonzero(as_tuple=True)  # row-major, slots ascending
    if not len(rows):
        return
    cols = columns[rows, slots]
    exact = _direct(q[rows].double(), refs[cols].double())
    # A run starts at a near slot not joined to the slot before it.
    joined = torch.zeros_like(near)
    joined[:, 1:] = close
    run = torch.cumsum(~joined[rows, slots], 0)
    order = torch.sort(cols, stable=True).indices
    order = order[torch.sort(exact[order], stable=True).indices]
    order = order[torch.sort(run[order], stable=True).indices]
    # Runs keep their slots; within a run, entries now follow (distance, index).
    columns[rows, slots] = cols[order]


def _rank_block(q: torch.Tensor, refs: torch.Tensor, ref_norms: torch.Tensor, fetch: int,
                direct: bool, sampled: bool) -> torch.Tensor:
    """(rows, fetch) reference indices for a block of queries, by (distance, index)."""
    n_r = refs.shape[0]
    q_norms = (q * q).sum(1, keepdim=True)
    if direct:
        # In reference chunks: the (rows, chunk, dim) differences stay within the budget.
        step = max(1, _block_elements(q.device) // (len(q) * refs.shape[1]))
        dist = torch.cat([_direct(q[:, None, :], refs[None, j:j + step, :])
                          for j in range(0, n_r, step)], dim=1)
        margin = torch.zeros_like(q_norms)
    else:
        # FAISS's BLAS formula: |r|^2 - 2 q.r + |q|^2, clamped at 0 (rounding can go below).
        dist = torch.addmm(ref_norms.expand(len(q), n_r), q, refs.T, beta=1, alpha=-2)
        dist.add_(q_norms).clamp_min_(0)
        r_max = ref_norms.max()
        margin = _ROUNDING * 2.0 ** -24 * (2 * np.sqrt(q.shape[1]) * (q_norms * r_max).sqrt()
                                           + 4 * (q_norms + r_max))

    rows, cols, counts = _candidates(dist, fetch, margin, sampled)
    width = int(counts.max())
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(rows), device=q.device) - first[rows]
    values = torch.full((len(q), width), float("inf"), device=q.device)
    values[rows, slot] = dist[rows, cols]
    columns = torch.full((len(q), width), n_r, dtype=torch.long, device=q.device)
    columns[rows, slot] = cols
    # A stable sort keeps equal distances in column order: FAISS's tie rule.
    values, order = torch.sort(values, dim=1, stable=True)
    columns = torch.gather(columns, 1, order)
    if not direct:
        _settle_near_ties(q, refs, values, columns, margin)
    return columns[:, :fetch]


def nearest_references(queries: np.ndarray, references: np.ndarray, fetch: int,
                       device: str | None = None,
                       threshold: Literal["sampled", "exact"] | None = None) -> np.ndarray:
    """(n_queries, fetch) reference indices ascending by (squared L2 distance, index).

    ``fetch`` must not exceed the number of references. Small problems (n_queries x dim
    below ``DIRECT_BELOW``) use direct distances throughout, as FAISS does. ``threshold``:
    how candidates are cut (None: sampled on a CPU, exact top-k elsewhere); it changes
    the speed only, never the result.
    """
    n_q, n_r = len(queries), len(references)
    if not 0 < fetch <= n_r:
        raise ValueError(f"cannot fetch {fetch} of {n_r} references")
    dim = references.shape[1]
    dev = torch.device(device or default_device())
    direct = n_q * dim < DIRECT_BELOW
    sampled = (threshold or ("sampled" if dev.type == "cpu" else "exact")) == "sampled"
    refs = torch.as_tensor(np.ascontiguousarray(references, dtype=np.float32)).to(dev)
    qs = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32))
    ref_norms = (refs * refs).sum(1)
    per_row = n_r * (dim if direct else 1)
    block = max(1, _block_elements(dev) // max(per_row, 1))
    out = np.empty((n_q, fetch), dtype=np.int64)
    with torch.inference_mode(), _full_fp32(dev):
        for start in range(0, n_q, block):
            q = qs[start:start + block].to(dev, non_blocking=True)
            found = _rank_block(q, refs, ref_norms, fetch, direct, sampled)
            out[start:start + len(q)] = found.cpu().numpy()
    return out


def _faiss_nearest(queries: np.ndarray, references: np.ndarray, fetch: int) -> np.ndarray:
    index = faiss.IndexFlatL2(references.shape[1])
    index.add(np.ascontiguousarray(references, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)
    return found


def knn_with_exclusion(queries: np.ndarray, references: np.ndarray, k: int,
                       kept: np.ndarray | None = None,
                       self_index: np.ndarray | None = None,
                       device: str | None = None, backend: Backend = "torch") -> np.ndarray:
    """Indices (n_queries, k) into ``references`` of each query's k nearest neighbours.

    ``queries`` and ``references`` must already be L2-normalised. Only references with
    ``kept`` True are searched. ``self_index[i]`` is the reference position of query i
    itself (-1 if it is not a reference); it is never returned. Rows with fewer than k
    eligible references end in ``MISSING``.

    Like PML's ``return_results``, k + 1 neighbours are fetched when queries can find
    themselves and the self match is dropped from each row; a row whose self match fell
    outside the k + 1 (ties, or the query is not indexed) keeps its first k.
    ``device``: None picks CUDA when available (the ranking is the same on both).
    """
    n_q, n_r = len(queries), len(references)
    kept = np.ones(n_r, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    self_index = (np.full(n_q, MISSING, dtype=np.int64) if self_index is None
                  else np.asarray(self_index, dtype=np.int64))
    if kept.shape != (n_r,) or self_index.shape != (n_q,):
        raise ValueError("kept must have one entry per reference, self_index one per query")
    if backend not in ("torch", "faiss"):
        raise ValueError(f"unknown ranking backend {backend!r} (torch, faiss)")
    out = np.full((n_q, k), MISSING, dtype=np.int64)
    kept_positions = np.flatnonzero(kept)
    if k <= 0 or n_q == 0 or len(kept_positions) == 0:
        return out

    # Where each query's self sits in the index of kept references (-1: not indexed).
    position_in_index = np.full(n_r, MISSING, dtype=np.int64)
    position_in_index[kept_positions] = np.arange(len(kept_positions))
    self_in_index = np.where(self_index >= 0, position_in_index[np.maximum(self_index, 0)],
                             MISSING)
    extra = int((self_in_index >= 0).any())
    fetch = min(k + extra, len(kept_positions))

    indexed = np.ascontiguousarray(references[kept_positions], dtype=np.float32)
    if backend == "faiss":
        found = _faiss_nearest(queries, indexed, fetch)
    else:
        found = nearest_references(queries, indexed, fetch, device)

    # Drop the self match, then move dropped and empty slots to the row's end (stable, so
    # the order of the others is untouched) and keep k columns.
    drop = (found == MISSING) | ((found == self_in_index[:, None]) & (self_in_index[:, None] >= 0))
    order = np.argsort(drop, axis=1, kind="stable")
    found = np.take_along_axis(found, order, axis=1)
    drop = np.take_along_axis(drop, order, axis=1)
    width = min(k, fetch)
    found, drop = found[:, :width], drop[:, :width]
    out[:, :width] = np.where(drop, MISSING, kept_positions[np.maximum(found, 0)])
    return out


def authors_knn(queries: np.ndarray, references: np.ndarray, k: int, kept: np.ndarray,
                self_index: np.ndarray) -> np.ndarray:
    """The neighbour lists the authors' exclusion-aware k-NN handed to PML (``knn: authors``).

    Their k-NN (used only when something is excluded) fetched ``min(k + n_excluded, n_refs)``
    neighbours over every reference, one more when queries are references, dropped the
    excluded ones, kept the first k, padded short rows with the last kept neighbour
    (reference 0 when none was kept), and only then let PML's ``return_results`` drop each
    query's self match, or the row's last entry where the self match is absent. With
    queries among the references each row therefore holds k - 1 neighbours, not k: the
    self match used up one of the k. FAISS marks fetches beyond the index size with -1,
    which survives the filter; PML reads it as the last reference (negative indexing), so
    the returned -1 must be read the same way (``labels[-1]``), not as ``MISSING``.

    Inputs as :func:`knn_with_exclusion` (L2-normalised). Returns (n_queries, k - 1) indices
    when any query is a reference, (n_queries, k) otherwise. A row whose padding repeats
    the self match would make PML fail; here only its first occurrence is dropped.
    """
    n_q, n_r = len(queries), len(references)
    kept = np.asarray(kept, dtype=bool)
    self_index = np.asarray(self_index, dtype=np.int64)
    with_self = bool((self_index >= 0).any())
    width = k - 1 if with_self else k
    if k <= 0 or n_q == 0 or width <= 0:
        return np.zeros((n_q, max(width, 0)), dtype=np.int64)
    fetch = min(k + int((~kept).sum()), n_r) + int(with_self)
    index = faiss.IndexFlatL2(references.shape[1])
    index.add(np.ascontiguousarray(references, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), min(fetch, n_r))
    if fetch > n_r:  # what FAISS returns for neighbours beyond the index size
        found = np.hstack([found, np.full((n_q, fetch - n_r), -1, dtype=found.dtype)])
    # The filter only knows the excluded set: FAISS's -1 is not in it and stays.
    valid = (found < 0) | kept[np.maximum(found, 0)]
    order = np.argsort(~valid, axis=1, kind="stable")  # valid first, in rank order
    found = np.take_along_axis(found, order, axis=1)[:, :k]
    n_valid = np.minimum(valid.sum(axis=1), k)
    if found.shape[1] < k:
        found = np.hstack([found, np.zeros((n_q, k - found.shape[1]), dtype=found.dtype)])
    columns = np.arange(k)[None, :]
    last_valid = np.take_along_axis(found, np.maximum(n_valid - 1, 0)[:, None], axis=1)
    padding = np.where(n_valid[:, None] > 0, last_valid, 0)
    rows = np.where(columns < n_valid[:, None], found, padding).astype(np.int64)
    if not with_self:
        return rows
    # PML's return_results: drop the self match, or the last column where it is absent.
    is_self = rows == self_index[:, None]
    first_self = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), k - 1)
    keep = columns != first_self[:, None]
    return rows[keep].reshape(n_q, k - 1)

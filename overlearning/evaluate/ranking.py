"""Nearest-neighbour rankings by cosine similarity, with index exclusion, in one FAISS search.

Embeddings are L2-normalised and searched with ``faiss.IndexFlatL2`` exactly as
pytorch-metric-learning's ``InferenceModel`` + ``AccuracyCalculator`` do, so that without
exclusion the ranking is theirs. Index exclusion builds the index from the kept references
only (a boolean mask, no loop over results): an excluded item can never be returned, and
the ranking equals a search over the reference set with the excluded items deleted.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

MISSING = -1  # index value for "no further reference" in a ranking row


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise unit length, as torch.nn.functional.normalize (which PML uses)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(tensor, p=2, dim=1).numpy()


def set_threads(threads: int | None) -> None:
    if threads:
        faiss.omp_set_num_threads(int(threads))
        torch.set_num_threads(int(threads))


def knn_with_exclusion(queries: np.ndarray, references: np.ndarray, k: int,
                       kept: np.ndarray | None = None,
                       self_index: np.ndarray | None = None) -> np.ndarray:
    """Indices (n_queries, k) into ``references`` of each query's k nearest neighbours.

    ``queries`` and ``references`` must already be L2-normalised. Only references with
    ``kept`` True are searched. ``self_index[i]`` is the reference position of query i
    itself (-1 if it is not a reference); it is never returned. Rows with fewer than k
    eligible references end in ``MISSING``.

    Like PML's ``return_results``, k + 1 neighbours are fetched when queries can find
    themselves and the self match is dropped from each row; a row whose self match fell
    outside the k + 1 (ties, or the query is not indexed) keeps its first k.
    """
    n_q, n_r = len(queries), len(references)
    kept = np.ones(n_r, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    self_index = (np.full(n_q, MISSING, dtype=np.int64) if self_index is None
                  else np.asarray(self_index, dtype=np.int64))
    if kept.shape != (n_r,) or self_index.shape != (n_q,):
        raise ValueError("kept must have one entry per reference, self_index one per query")
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

    index = faiss.IndexFlatL2(references.shape[1])
    index.add(np.ascontiguousarray(references[kept_positions], dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)

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

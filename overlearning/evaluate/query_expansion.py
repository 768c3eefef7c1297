"""alpha-weighted query expansion (alpha-QE, Radenović, Tolias and Chum, TPAMI 2019).

Each query is replaced by the L2-normalised sum of itself and its n nearest indexed
references, each weighted by its cosine similarity to the query raised to the power alpha
(the query itself has similarity 1, so weight 1); the search then runs again with the new
vector. Alpha = 1 and equal weights would be average QE (Chum et al. 2007); a large alpha
keeps only near-duplicates.

Exclusion-aware by construction: the neighbours come from the exclusion-aware search
(:func:`overlearning.evaluate.ranking.knn_with_exclusion`), which never returns an excluded
reference and never the query's own entry in the index, so neither can enter the expanded
query. Negative similarities get weight 0 (with an odd alpha they would otherwise push the
query away from a neighbour; the published setting uses non-negative descriptors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from overlearning.evaluate.ranking import MISSING, knn_with_exclusion, l2_normalise

_BLOCK_ELEMENTS = 1 << 24  # (queries x n x dim) gathered neighbour vectors per block


@dataclass(frozen=True)
class AlphaQE:
    alpha: float = 3.0
    n: int = 50

    @classmethod
    def from_settings(cls, settings: Mapping) -> AlphaQE:
        return cls(float(settings["alpha"]), int(settings["n"]))


def alpha_query_expansion(queries: np.ndarray, references: np.ndarray, kept: np.ndarray,
                          self_index: np.ndarray, params: AlphaQE = AlphaQE(),
                          device: str | None = None) -> np.ndarray:
    """(n_q, dim) float32 expanded queries, L2-normalised. Inputs L2-normalised."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    r = np.ascontiguousarray(references, dtype=np.float32)
    if params.n <= 0 or len(q) == 0:
        return l2_normalise(q)
    neighbours = knn_with_exclusion(q, r, params.n, kept, self_index, device)
    found = neighbours != MISSING
    out = np.empty(q.shape, dtype=np.float64)
    step = max(1, _BLOCK_ELEMENTS // max(params.n * q.shape[1], 1))
    for start in range(0, len(q), step):
        stop = min(start + step, len(q))
        x = r[np.maximum(neighbours[start:stop], 0)].astype(np.float64)   # (b, n, dim)
        base = q[start:stop].astype(np.float64)
        sims = np.einsum("bd,bnd->bn", base, x)
        weights = np.where(found[start:stop], np.maximum(sims, 0.0) ** params.alpha, 0.0)
        out[start:stop] = base + np.einsum("bn,bnd->bd", weights, x)
    return l2_normalise(out.astype(np.float32))

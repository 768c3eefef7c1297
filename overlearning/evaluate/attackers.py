"""Evaluation attackers: how an operator searches the index (config ``evaluation.attackers``).

- ``plain``: nearest neighbours by cosine similarity (the study's search; its numbers are
  the metrics record's top level, unchanged);
- ``k_reciprocal``: k-reciprocal re-ranking (overlearning.evaluate.rerank);
- ``alpha_qe``: alpha-weighted query expansion (overlearning.evaluate.query_expansion).

Every attacker sees the same index as the plain search: the kept references only. An
excluded reference is removed before any neighbour graph or expanded query is built, so it
can neither be returned nor help another item be found. Each attacker gives one
:class:`Search`: the ranking MAP@R reads, the scores the re-ID protocol and the pair ROC
read, and the per-query top-k evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overlearning.evaluate.item_lists import SharedLists
from overlearning.evaluate.query_expansion import AlphaQE, alpha_query_expansion
from overlearning.evaluate.ranking import MISSING, knn_with_exclusion, l2_normalise
from overlearning.evaluate.rerank import KReciprocal, ReRanked, k_reciprocal
from overlearning.evaluate.retrieval_inputs import RetrievalInputs

ATTACKERS = ("plain", "k_reciprocal", "alpha_qe")
# Dense re-ranked query x gallery matrices up to this many elements are kept in memory for
# the re-ID protocol and the ROC (Market-1501: 3,368 x 15,913 = 54 M, 430 MB in float64),
# larger ones recomputed per pass.
DENSE_LIMIT = 1 << 27


@dataclass(frozen=True)
class AttackerSettings:
    """Which attackers run and their parameters (config ``evaluation.attackers`` and
    ``evaluation.attacker_settings``)."""
    names: tuple[str, ...] = ("plain",)
    k_reciprocal: KReciprocal = field(default_factory=KReciprocal)
    alpha_qe: AlphaQE = field(default_factory=AlphaQE)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AttackerSettings:
        names = tuple(settings.get("attackers", ("plain",)))
        unknown = [n for n in names if n not in ATTACKERS]
        if unknown:
            raise ValueError(f"unknown attacker {unknown[0]!r} ({', '.join(ATTACKERS)})")
        if "plain" not in names:
            names = ("plain", *names)  # the study's own numbers are always computed
        kr = settings.get("k_reciprocal")
        qe = settings.get("alpha_qe")
        return cls(names, KReciprocal.from_settings(kr) if kr else KReciprocal(),
                   AlphaQE.from_settings(qe) if qe else AlphaQE())

    def parameters(self, name: str) -> dict[str, Any]:
        """The attacker's parameters as recorded in the metrics file."""
        if name == "k_reciprocal":
            p = self.k_reciprocal
            return {"k1": p.k1, "k2": p.k2, "lambda": p.lambda_value}
        if name == "alpha_qe":
            return {"alpha": self.alpha_qe.alpha, "n": self.alpha_qe.n}
        return {}


def rank_rows(distances: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) column indices ascending by (distance, index); ``MISSING`` where fewer than
    k finite distances remain (+inf marks what cannot be returned)."""
    n_rows, n_cols = distances.shape
    out = np.full((n_rows, k), MISSING, dtype=np.int64)
    if k <= 0 or n_cols == 0:
        return out
    take = min(k, n_cols)
    if take < n_cols:
        kth = np.partition(distances, take - 1, axis=1)[:, take - 1:take]
        # Every column at or below the k-th value: ties at the boundary are all candidates.
        rows, cols = np.nonzero(distances <= kth)
    else:
        rows, cols = np.nonzero(np.ones_like(distances, dtype=bool))
    values = distances[rows, cols]
    order = np.lexsort((cols, values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    slot = np.arange(len(rows)) - starts[rows]
    keep = (slot < take) & np.isfinite(values)
    out[rows[keep], slot[keep]] = cols[keep]
    return out


@dataclass
class Search:
    """One attacker's search over one evaluation's index.

    ``queries``: the query vectors it searches with (the expanded ones for alpha-QE);
    ``reranked``: the k-reciprocal distances, when the attacker re-ranks.
    """
    name: str
    inputs: RetrievalInputs
    queries: np.ndarray
    references: np.ndarray
    reranked: ReRanked | None = None
    _dense: np.ndarray | None = None
    # Re-ranked searches: the widest ranking computed so far and its scores (a narrower
    # ranking is its prefix: same (distance, index) order), so that MAP@R's ranking and the
    # evidence's top-k cost one pass over the distances, not three.
    min_width: int = 0
    _ranked: tuple[np.ndarray, np.ndarray] | None = None

    def distances(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, n_refs) re-ranked distances, +inf at excluded references."""
        assert self.reranked is not None
        if self._dense is not None:
            return self._dense[start:stop]
        out = []
        step = self.reranked.block_size()
        for s in range(start, stop, step):
            out.append(self.reranked.rows(s, min(s + step, stop)))
        return np.concatenate(out) if out else np.zeros((0, len(self.references)))

    def keep_dense(self) -> None:
        """Hold the whole re-ranked matrix when it is small enough (several passes read it)."""
        if self.reranked is not None and self.queries.size and (
                len(self.queries) * len(self.references) <= DENSE_LIMIT):
            self._dense = self.distances(0, len(self.queries))

    def similarity(self) -> Callable[[int, int], np.ndarray] | None:
        """Scores for the re-ID protocol and the ROC (higher = nearer), or None where they
        are the cosine similarities of :attr:`queries` (plain, alpha-QE)."""
        if self.reranked is None:
            return None
        return lambda start, stop: -self.distances(start, stop)

    def ranking(self, k: int) -> np.ndarray:
        """(n_q, k) references by the attacker's order: kept only, no self match."""
        inputs = self.inputs
        if self.reranked is None:
            return knn_with_exclusion(self.queries, self.references, k, inputs.kept,
                                      inputs.self_index)
        if self._ranked is not None and self._ranked[0].shape[1] >= k:
            return self._ranked[0][:, :k]
        width = max(k, self.min_width)
        out = np.full((len(self.queries), width), MISSING, dtype=np.int64)
        scores = np.full(out.shape, np.nan)
        step = self.reranked.block_size()
        for start in range(0, len(self.queries), step):
            stop = min(start + step, len(self.queries))
            dist = self.distances(start, stop)
            if self._dense is not None:
                dist = dist.copy()  # the self entries are blanked in this block only
            self_rows = np.flatnonzero(inputs.self_index[start:stop] >= 0)
            dist[self_rows, inputs.self_index[start:stop][self_rows]] = np.inf
            block = rank_rows(dist, width)
            out[start:stop] = block
            scores[start:stop] = np.where(
                block == MISSING, np.nan,
                np.take_along_axis(dist, np.maximum(block, 0), axis=1))
        self._ranked = (out, scores)
        return out[:, :k]

    def scores(self, ranking: np.ndarray) -> np.ndarray:
        """The score of each ranked reference: cosine similarity (to the expanded query for
        alpha-QE) or re-ranked distance; NaN where ``MISSING``."""
        refs = np.maximum(ranking, 0)
        if self.reranked is None:
            values = np.empty(ranking.shape)
            step = max(1, (1 << 22) // max(ranking.shape[1] * self.queries.shape[1], 1))
            for start in range(0, len(ranking), step):
                q = self.queries[start:start + step].astype(np.float64)
                r = self.references[refs[start:start + step]].astype(np.float64)
                values[start:start + step] = np.einsum("qd,qkd->qk", q, r)
        else:
            cached, cached_scores = self._ranked if self._ranked is not None else (None, None)
            width = ranking.shape[1]
            if cached is not None and cached.shape[1] >= width and np.array_equal(
                    cached[:, :width], ranking):
                return cached_scores[:, :width]
            values = np.empty(ranking.shape)
            step = self.reranked.block_size()
            for start in range(0, len(ranking), step):
                stop = min(start + step, len(ranking))
                values[start:stop] = np.take_along_axis(self.distances(start, stop),
                                                        refs[start:stop], axis=1)
        return np.where(ranking == MISSING, np.nan, values)

    @property
    def score_kind(self) -> str:
        return "reranked_distance" if self.reranked is not None else "cosine_similarity"


def build_search(name: str, inputs: RetrievalInputs, settings: AttackerSettings,
                 device: str | None = None, shared: SharedLists | None = None) -> Search:
    """The attacker's search over the evaluation's kept references (``shared``: the
    neighbour lists of the evaluation's group, for the k-reciprocal attacker)."""
    q = l2_normalise(inputs.queries.embeddings)
    r = l2_normalise(inputs.references.embeddings)
    if name == "plain":
        return Search(name, inputs, q, r)
    if name == "alpha_qe":
        expanded = alpha_query_expansion(q, r, inputs.kept, inputs.self_index,
                                         settings.alpha_qe, device)
        return Search(name, inputs, expanded, r)
    if name == "k_reciprocal":
        return Search(name, inputs, q, r, k_reciprocal(q, r, inputs.kept, settings.k_reciprocal,
                                                       device, shared))
    raise ValueError(f"unknown attacker {name!r} ({', '.join(ATTACKERS)})")


def attacker_names(settings: AttackerSettings) -> Sequence[str]:
    """The attackers beside plain, in config order."""
    return [n for n in settings.names if n != "plain"]

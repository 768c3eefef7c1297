"""Retrieval metrics exactly as pytorch-metric-learning's AccuracyCalculator defines them.

``AccuracyCalculator(k="max_bin_count")`` mean average precision (MAP) and MAP@R, on
L2-normalised embeddings ranked by FAISS ``IndexFlatL2`` (= cosine similarity):

- R(q) = number of references with the query's label, not counting the query itself;
- k = the largest R(q) over the queries (PML's max bin count, minus one when the queries
  are the references);
- AP(q) sums precision@i over every hit i within the first k (MAP@R: within the first R(q))
  and divides by R(q); queries with R(q) = 0 are left out; MAP is the mean over the rest.

With index exclusion the ranking is searched over the kept references only. Two readings
of R are reported, both from that one ranking:

- ``retrieval`` (the study's): R counts every reference with the label, so a relevant item
  that was excluded from the index is a miss. Without exclusion this is PML's number; with
  exclusion it is what the authors' exclusion-aware k-NN fed into PML (minus their padding
  bug, which repeated the last kept neighbour and could count one hit several times).
- ``retrieval_indexed``: R counts kept references only, which equals recomputing PML on the
  reference set with the excluded items deleted ("how well is what is still indexed found").

``knn="authors"`` (config ``evaluation.knn``) scores the study reading on the neighbour
lists of the authors' exclusion-aware k-NN instead (:func:`ranking.authors_knn`): with
queries among the references and something excluded, k - 1 neighbours per query (their
self match used up one of the k), short rows padded with a repeated neighbour. Without
exclusion their evaluation was PML's, so nothing changes; ``retrieval_indexed`` never
changes (PML on the deleted reference set has no exclusion).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from overlearning.evaluate.ranking import MISSING, authors_knn, knn_with_exclusion, l2_normalise
from overlearning.evaluate.retrieval_inputs import RetrievalInputs


@dataclass(frozen=True)
class RetrievalResult:
    mean_average_precision: float
    mean_average_precision_at_r: float
    k: int
    scored_queries: int
    average_precision: np.ndarray  # per query, NaN where R = 0
    average_precision_at_r: np.ndarray

    knn: str = "exact"  # "authors": the study reading on the authors' k-NN lists

    def summary(self) -> dict:
        out = {
            "mean_average_precision": _json_float(self.mean_average_precision),
            "mean_average_precision_at_r": _json_float(self.mean_average_precision_at_r),
            "k": int(self.k),
            "scored_queries": int(self.scored_queries),
        }
        if self.knn != "exact":
            out["knn"] = self.knn
        return out


def _json_float(value: float, digits: int = 10) -> float | None:
    # Rounded so that float noise below 1e-10 (BLAS thread scheduling) cannot change the bytes.
    return None if value is None or math.isnan(value) else round(float(value), digits)


def relevant_counts(query_labels: np.ndarray, reference_labels: np.ndarray,
                    counted: np.ndarray, self_counted: np.ndarray) -> np.ndarray:
    """R per query: counted references with the query's label, minus the query itself
    where it is one of the counted references."""
    values, counts = np.unique(reference_labels[counted], return_counts=True)
    per_query = np.zeros(len(query_labels), dtype=np.int64)
    if len(values):
        pos = np.minimum(np.searchsorted(values, query_labels), len(values) - 1)
        per_query = np.where(values[pos] == query_labels, counts[pos], 0)
    return per_query - self_counted.astype(np.int64)


def average_precision(hits: np.ndarray, relevant: np.ndarray, at_r: bool) -> np.ndarray:
    """PML's mean_average_precision per query (before averaging); NaN where relevant == 0.

    ``hits`` (n, k) bool: the i-th retrieved reference has the query's label.
    """
    n, k = hits.shape
    columns = np.arange(1, k + 1)
    window = (columns[None, :] <= relevant[:, None]) if at_r else np.ones((n, k), dtype=bool)
    counted = hits & window
    precision = np.cumsum(counted, axis=1) * counted / columns[None, :].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.sum(precision * window, axis=1) / relevant
    return np.where(relevant > 0, ap, np.nan)


def _score(hits_full: np.ndarray, relevant: np.ndarray) -> RetrievalResult:
    scored = relevant > 0
    k = int(relevant.max()) if len(relevant) else 0
    hits = hits_full[:, :k]
    ap = average_precision(hits, relevant, at_r=False)
    ap_r = average_precision(hits, relevant, at_r=True)
    if scored.any():
        mean_ap, mean_ap_r = float(np.mean(ap[scored])), float(np.mean(ap_r[scored]))
    else:
        mean_ap = mean_ap_r = float("nan")
    return RetrievalResult(mean_ap, mean_ap_r, k, int(scored.sum()), ap, ap_r)


@dataclass(frozen=True)
class RetrievalEvaluation:
    ranking: np.ndarray          # (n_queries, k) reference indices, MISSING padded
    study: RetrievalResult       # R over all references (excluded relevant items are misses)
    indexed: RetrievalResult     # R over kept references only


KNN_MODES = ("exact", "authors")


Ranker = Callable[[int], np.ndarray]


def evaluate_retrieval(inputs: RetrievalInputs, knn: str = "exact",
                       ranker: Ranker | None = None) -> RetrievalEvaluation:
    """Rank every query once against the kept references and score both readings of R
    (``knn``: see the module docstring).

    ``ranker(k)``, when given, returns the (n_queries, k) ranking of another search (an
    attacker of overlearning.evaluate.attackers), with the same conventions as
    :func:`knn_with_exclusion`: kept references only, no self match, ``MISSING`` padded.
    The authors' k-NN reading applies to the plain search only.
    """
    if knn not in KNN_MODES:
        raise ValueError(f"knn must be one of {KNN_MODES}, not {knn!r}")
    q_labels, r_labels = inputs.queries.labels, inputs.references.labels
    has_self = inputs.self_index >= 0
    safe_self = np.maximum(inputs.self_index, 0)
    everything = np.ones(len(r_labels), dtype=bool)
    r_all = relevant_counts(q_labels, r_labels, everything, has_self)
    r_kept = relevant_counts(q_labels, r_labels, inputs.kept,
                             has_self & inputs.kept[safe_self])
    k = int(max(r_all.max(initial=0), r_kept.max(initial=0)))
    if ranker is not None:
        ranking = ranker(k)
    else:
        ranking = knn_with_exclusion(l2_normalise(inputs.queries.embeddings),
                                     l2_normalise(inputs.references.embeddings), k,
                                     inputs.kept, inputs.self_index)
    retrieved = ranking != MISSING
    hits = retrieved & (r_labels[np.maximum(ranking, 0)] == q_labels[:, None])
    study = _score(hits, r_all)
    if knn == "authors" and ranker is None and not inputs.kept.all():
        theirs = authors_knn(l2_normalise(inputs.queries.embeddings),
                             l2_normalise(inputs.references.embeddings),
                             int(r_all.max(initial=0)), inputs.kept, inputs.self_index)
        # Their -1 (FAISS beyond the index) is read as PML reads it: the last reference.
        study = dataclasses.replace(_score(r_labels[theirs] == q_labels[:, None], r_all),
                                    knn="authors")
    return RetrievalEvaluation(ranking, study, _score(hits, r_kept))

"""The standard person re-identification protocol (as torchreid's Market-1501 evaluation).

For each query the gallery is ranked by similarity; gallery images of the same identity
taken by the same camera are dropped from that query's ranking (they are too easy); CMC
Rank-r is the fraction of queries with a correct match within the first r; AP averages
precision at every correct match; queries with no correct match left are skipped. We rank
by cosine similarity (the retrieval metric's) where torchreid defaults to Euclidean
distance; the camera rule applies only where both cameras are known (>= 0).

With index exclusion, excluded gallery images leave every ranking. ``reid`` (the study's
reading) still counts them as correct matches that were never found, so a query whose
matches were all excluded scores 0; ``reid_indexed`` counts only indexed matches (torchreid
run on the gallery with the excluded images deleted).

mINP (mean inverse negative penalty, Ye et al. 2021, as torchreid/fast-reid compute it):
per query, the number of correct matches divided by the rank of the hardest (last) one;
in ``reid`` a query with an excluded correct match never finds its hardest match and
scores 0.

The pair-similarity ROC uses the same valid pairs: same identity = positive. It is
computed exactly (scikit-learn's ``roc_curve`` on every pair's float64 similarity), so
similarities packed into a tiny range still give the true curve; only the stored points
of the curve are thinned for the figure.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from overlearning.evaluate.ranking import l2_normalise

RANKS = (1, 5, 10)
FPR_TARGETS = (1e-4, 1e-3, 1e-2)  # fast-reid's TPR@FPR operating points
CURVE_POINTS = 400  # at most about this many stored ROC points (log- and linear-spaced in FPR)


@dataclass(frozen=True)
class ReidResult:
    cmc: dict[int, float]
    mean_ap: float
    scored_queries: int
    mean_inp: float = float("nan")

    def summary(self) -> dict:
        out = {f"rank{r}": _rounded(v) for r, v in self.cmc.items()}
        out["mAP"] = _rounded(self.mean_ap)
        out["mINP"] = _rounded(self.mean_inp)
        out["scored_queries"] = int(self.scored_queries)
        return out


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 10)


def _valid_pairs(q_labels, q_cams, g_labels, g_cams) -> np.ndarray:
    same_id = q_labels[:, None] == g_labels[None, :]
    cams_known = (q_cams[:, None] >= 0) & (g_cams[None, :] >= 0)
    same_cam = cams_known & (q_cams[:, None] == g_cams[None, :])
    return ~(same_id & same_cam)


def reid_protocol(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                  gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                  kept: np.ndarray | None = None, ranks: Sequence[int] = RANKS,
                  chunk: int = 256) -> tuple[ReidResult, ReidResult]:
    """(study reading, indexed-only reading) of CMC, mAP and mINP; chunked over queries."""
    kept = np.ones(len(g_labels), dtype=bool) if kept is None else np.asarray(kept, bool)
    q = l2_normalise(queries)
    g = l2_normalise(gallery)
    ranks = tuple(ranks)
    first_hits: list[np.ndarray] = []
    ap_study, ap_indexed = [], []
    inp_study, inp_indexed = [], []
    n_rel_all_list, n_rel_kept_list = [], []
    for start in tqdm(range(0, len(q), chunk), desc="re-id", file=sys.stderr, disable=len(q) <= chunk):
        stop = min(start + chunk, len(q))
        sims = q[start:stop] @ g.T
        # Stable sort on -similarity: ties keep gallery order, so results are reproducible.
        order = np.argsort(-sims, axis=1, kind="stable")
        valid = _valid_pairs(q_labels[start:stop], q_cams[start:stop], g_labels, g_cams)
        match = q_labels[start:stop, None] == g_labels[None, :]
        n_rel_all = (match & valid).sum(axis=1)
        in_ranking = np.take_along_axis(valid & kept[None, :], order, axis=1)
        hits = np.take_along_axis(match, order, axis=1) & in_ranking
        # Rank of every listed item among the listed items only (1-based).
        position = np.cumsum(in_ranking, axis=1)
        cum_hits = np.cumsum(hits, axis=1)
        precision_sum = np.sum(np.where(hits, cum_hits / np.maximum(position, 1), 0.0), axis=1)
        n_rel_kept = hits.sum(axis=1)
        first = np.where(hits.any(axis=1),
                         np.take_along_axis(position, np.argmax(hits, axis=1)[:, None], 1)[:, 0],
                         np.iinfo(np.int64).max)
        # Rank (among listed items) of the hardest correct match, for INP.
        last = hits.shape[1] - 1 - np.argmax(hits[:, ::-1], axis=1)
        last_rank = np.take_along_axis(position, last[:, None], 1)[:, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap_study.append(precision_sum / n_rel_all)
            ap_indexed.append(precision_sum / n_rel_kept)
            inp_indexed.append(n_rel_kept / last_rank)
            # An excluded correct match is never found: the hardest match is at rank infinity.
            inp_study.append(np.where(n_rel_kept == n_rel_all, n_rel_all / last_rank, 0.0))
        first_hits.append(first)
        n_rel_all_list.append(n_rel_all)
        n_rel_kept_list.append(n_rel_kept)

    def summarise(first: list, ap: list, inp: list, n_rel: list) -> ReidResult:
        first_arr, ap_arr, inp_arr, rel = (np.concatenate(x) if x else np.array([])
                                           for x in (first, ap, inp, n_rel))
        scored = rel > 0
        if not scored.any():
            return ReidResult({r: float("nan") for r in ranks}, float("nan"), 0)
        cmc = {r: float(np.mean(first_arr[scored] <= r)) for r in ranks}
        return ReidResult(cmc, float(np.mean(ap_arr[scored])), int(scored.sum()),
                          float(np.mean(inp_arr[scored])))

    return (summarise(first_hits, ap_study, inp_study, n_rel_all_list),
            summarise(first_hits, ap_indexed, inp_indexed, n_rel_kept_list))


def pair_scores(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                kept: np.ndarray | None = None, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity, same identity) of every valid, indexed query-gallery pair.

    Similarities are float64 dot products of the L2-normalised embeddings: float32 would
    round values that differ below 6e-8 near 1 into ties.
    """
    kept = np.ones(len(g_labels), dtype=bool) if kept is None else np.asarray(kept, bool)
    q = l2_normalise(queries).astype(np.float64)
    g = l2_normalise(gallery[kept]).astype(np.float64)
    gl, gc = g_labels[kept], g_cams[kept]
    scores, labels = [], []
    for start in range(0, len(q), chunk):
        stop = min(start + chunk, len(q))
        sims = q[start:stop] @ g.T
        valid = _valid_pairs(q_labels[start:stop], q_cams[start:stop], gl, gc)
        scores.append(sims[valid])
        labels.append((q_labels[start:stop, None] == gl[None, :])[valid])
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(scores), np.concatenate(labels)


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """fast-reid's operating point: the TPR of the curve point whose FPR is nearest the
    target (first such point on scikit-learn's ``roc_curve``)."""
    return float(tpr[int(np.argmin(np.abs(fpr - target)))])


def thin_curve(fpr: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
    """Indices of curve points to store for the figure: the last point at or below each of
    ``points / 2`` log-spaced and ``points / 2`` linear-spaced FPRs, plus both ends."""
    positive = fpr[fpr > 0]
    grid = np.linspace(0.0, 1.0, points // 2)
    if len(positive):
        grid = np.concatenate([grid, np.geomspace(positive.min(), 1.0, points // 2)])
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return np.unique(np.concatenate([[0, len(fpr) - 1], np.clip(idx, 0, len(fpr) - 1)]))


def pair_similarity_roc(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                        gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                        kept: np.ndarray | None = None, fpr_targets: Sequence[float] = FPR_TARGETS,
                        points: int = CURVE_POINTS, chunk: int = 1024) -> dict:
    """Exact ROC of same/different-identity pairs (valid, indexed pairs only) by cosine
    similarity (threshold t: pairs with similarity >= t are called the same person).

    scikit-learn's ``roc_curve`` on every pair (memory: about 40 bytes a pair, 2 GB for
    Market-1501's 53 M pairs); AUC by the trapezoid rule on that curve (= the
    Mann-Whitney statistic, ties counted half); TPR at each FPR target as fast-reid reads
    it. Only the stored ``fpr``/``tpr``/``thresholds`` are thinned (``thin_curve``).
    """
    from sklearn.metrics import auc as trapezoid_auc
    from sklearn.metrics import roc_curve

    scores, same = pair_scores(queries, q_labels, q_cams, gallery, g_labels, g_cams, kept, chunk)
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    out: dict = {"positive_pairs": n_pos, "negative_pairs": n_neg}
    keys = [f"tpr_at_fpr_{target:.0e}" for target in fpr_targets]
    if n_pos == 0 or n_neg == 0:
        out.update({"auc": None, **dict.fromkeys(keys), "curve_points": 0,
                    "thresholds": [], "fpr": [], "tpr": []})
        return out
    fpr, tpr, thresholds = roc_curve(same, scores)
    out["auc"] = _rounded(trapezoid_auc(fpr, tpr))
    for key, target in zip(keys, fpr_targets, strict=True):
        out[key] = _rounded(tpr_at_fpr(fpr, tpr, target))
    out["curve_points"] = int(len(fpr))
    keep = thin_curve(fpr, points)
    # The first threshold is +inf (nothing called the same): JSON has no infinity, so null.
    out["thresholds"] = [None if not np.isfinite(t) else round(float(t), 12) for t in thresholds[keep]]
    out["fpr"] = [round(float(v), 10) for v in fpr[keep]]
    out["tpr"] = [round(float(v), 10) for v in tpr[keep]]
    return out

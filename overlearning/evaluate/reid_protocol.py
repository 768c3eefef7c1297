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

The pair-similarity ROC uses the same valid pairs: same identity = positive.
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
ROC_BINS = 2000  # similarity histogram resolution on [-1, 1]


@dataclass(frozen=True)
class ReidResult:
    cmc: dict[int, float]
    mean_ap: float
    scored_queries: int

    def summary(self) -> dict:
        out = {f"rank{r}": _rounded(v) for r, v in self.cmc.items()}
        out["mAP"] = _rounded(self.mean_ap)
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
    """(study reading, indexed-only reading) of CMC and mAP; chunked over queries."""
    kept = np.ones(len(g_labels), dtype=bool) if kept is None else np.asarray(kept, bool)
    q = l2_normalise(queries)
    g = l2_normalise(gallery)
    ranks = tuple(ranks)
    first_hits: list[np.ndarray] = []
    ap_study, ap_indexed = [], []
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
        with np.errstate(invalid="ignore", divide="ignore"):
            ap_study.append(precision_sum / n_rel_all)
            ap_indexed.append(precision_sum / n_rel_kept)
        first_hits.append(first)
        n_rel_all_list.append(n_rel_all)
        n_rel_kept_list.append(n_rel_kept)

    def summarise(first: list, ap: list, n_rel: list) -> ReidResult:
        first_arr, ap_arr, rel = (np.concatenate(x) if x else np.array([]) for x in (first, ap, n_rel))
        scored = rel > 0
        if not scored.any():
            return ReidResult({r: float("nan") for r in ranks}, float("nan"), 0)
        cmc = {r: float(np.mean(first_arr[scored] <= r)) for r in ranks}
        return ReidResult(cmc, float(np.mean(ap_arr[scored])), int(scored.sum()))

    return (summarise(first_hits, ap_study, n_rel_all_list),
            summarise(first_hits, ap_indexed, n_rel_kept_list))


def pair_similarity_roc(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                        gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                        kept: np.ndarray | None = None, bins: int = ROC_BINS,
                        chunk: int = 1024) -> dict:
    """ROC of same/different-identity pairs (valid, indexed pairs only) by cosine similarity.

    Similarities are histogrammed on ``bins`` equal bins of [-1, 1] so memory stays bounded
    on Market-1501's 50 M pairs; the curve holds one point per bin edge (threshold t: pairs
    with similarity >= t are called the same person), from t = 1 down to -1, without the
    repeats where no pair lies between two edges; the AUC is the trapezoid area.
    """
    kept = np.ones(len(g_labels), dtype=bool) if kept is None else np.asarray(kept, bool)
    q = l2_normalise(queries)
    g = l2_normalise(gallery[kept])
    gl, gc = g_labels[kept], g_cams[kept]
    edges = np.linspace(-1.0, 1.0, bins + 1)
    pos_hist = np.zeros(bins, dtype=np.int64)
    neg_hist = np.zeros(bins, dtype=np.int64)
    for start in range(0, len(q), chunk):
        stop = min(start + chunk, len(q))
        sims = np.clip(q[start:stop] @ g.T, -1.0, 1.0)
        valid = _valid_pairs(q_labels[start:stop], q_cams[start:stop], gl, gc)
        same = q_labels[start:stop, None] == gl[None, :]
        # Bin i holds [edges[i], edges[i+1]); similarity exactly 1 goes to the last bin.
        idx = np.minimum(((sims + 1.0) * (bins / 2.0)).astype(np.int64), bins - 1)
        pos_hist += np.bincount(idx[valid & same], minlength=bins)
        neg_hist += np.bincount(idx[valid & ~same], minlength=bins)
    # Threshold edges[i]: pairs in bins >= i are predicted "same"; from high to low threshold.
    tp = np.concatenate([np.cumsum(pos_hist[::-1])[::-1], [0]])
    fp = np.concatenate([np.cumsum(neg_hist[::-1])[::-1], [0]])
    n_pos, n_neg = int(pos_hist.sum()), int(neg_hist.sum())
    tpr = (tp / n_pos if n_pos else np.full(len(tp), np.nan))[::-1]
    fpr = (fp / n_neg if n_neg else np.full(len(fp), np.nan))[::-1]
    thresholds = edges[::-1]
    auc = float(np.trapezoid(tpr, fpr)) if n_pos and n_neg else float("nan")
    # Thresholds between which no pair lies repeat the previous point: keep one of each.
    changed = np.ones(len(tpr), dtype=bool)
    changed[1:] = (np.diff(tp[::-1]) != 0) | (np.diff(fp[::-1]) != 0)
    tpr, fpr, thresholds = tpr[changed], fpr[changed], thresholds[changed]
    return {
        "positive_pairs": n_pos,
        "negative_pairs": n_neg,
        "auc": _rounded(auc),
        "thresholds": [round(float(t), 6) for t in thresholds],
        "fpr": [round(float(v), 8) for v in fpr] if n_neg else [],
        "tpr": [round(float(v), 8) for v in tpr] if n_pos else [],
    }

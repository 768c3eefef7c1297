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

The pair-similarity ROC uses the same valid pairs: same identity = positive. It is exact
(every pair's float64 similarity counted against the distinct positive scores; equal to
scikit-learn's ``roc_curve``/``auc``), so similarities packed into a tiny range still give
the true curve; only the stored points of the curve are thinned for the figure.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
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
    # Per query: AP (NaN where nothing is relevant) and the 1-based rank of the first
    # correct match among the listed items (0 where none is listed).
    average_precision: np.ndarray | None = None
    first_match: np.ndarray | None = None

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


Similarity = Callable[[int, int], np.ndarray]


def reid_protocol(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                  gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                  kept: np.ndarray | None = None, ranks: Sequence[int] = RANKS,
                  chunk: int = 256, similarity: Similarity | None = None
                  ) -> tuple[ReidResult, ReidResult]:
    """(study reading, indexed-only reading) of CMC, mAP and mINP; chunked over queries.

    ``similarity(start, stop)``, when given, returns the (stop - start, n_gallery) scores of
    another search (higher = nearer; values at excluded columns are never read) in place
    of the cosine similarities of ``queries`` and ``gallery``.
    """
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
        sims = q[start:stop] @ g.T if similarity is None else similarity(start, stop)
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
        listed = np.where(first_arr == np.iinfo(np.int64).max, 0, first_arr)
        per_query = np.where(scored, ap_arr, np.nan)
        if not scored.any():
            return ReidResult({r: float("nan") for r in ranks}, float("nan"), 0,
                              average_precision=per_query, first_match=listed)
        cmc = {r: float(np.mean(first_arr[scored] <= r)) for r in ranks}
        return ReidResult(cmc, float(np.mean(ap_arr[scored])), int(scored.sum()),
                          float(np.mean(inp_arr[scored])), per_query, listed)

    return (summarise(first_hits, ap_study, inp_study, n_rel_all_list),
            summarise(first_hits, ap_indexed, inp_indexed, n_rel_kept_list))


def _pair_chunks(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                 gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                 kept: np.ndarray | None, chunk: int, similarity: Similarity | None = None):
    """(similarities, same identity) of the valid, indexed pairs, one query chunk at a time.

    Similarities are float64 dot products of the L2-normalised embeddings: float32 would
    round values that differ below 6e-8 near 1 into ties. ``similarity``: another search's
    float64 scores over every gallery item, as in :func:`reid_protocol`.
    """
    kept = np.ones(len(g_labels), dtype=bool) if kept is None else np.asarray(kept, bool)
    q = l2_normalise(queries).astype(np.float64)
    g = l2_normalise(gallery[kept]).astype(np.float64)
    gl, gc = g_labels[kept], g_cams[kept]
    for start in range(0, len(q), chunk):
        stop = min(start + chunk, len(q))
        sims = q[start:stop] @ g.T if similarity is None else similarity(start, stop)[:, kept]
        valid = _valid_pairs(q_labels[start:stop], q_cams[start:stop], gl, gc)
        yield sims[valid], (q_labels[start:stop, None] == gl[None, :])[valid]


def positive_pair_scores(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                         gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                         kept: np.ndarray | None = None) -> np.ndarray:
    """Similarities of the valid, indexed same-identity pairs only, without the full matrix
    (gallery grouped by identity; the same float64 arithmetic as :func:`_pair_chunks`)."""
    kept = np.ones(len(g_labels), dtype=bool) if kept is None else np.asarray(kept, bool)
    q = l2_normalise(queries).astype(np.float64)
    g = l2_normalise(gallery[kept]).astype(np.float64)
    gl, gc = g_labels[kept], g_cams[kept]
    order = np.argsort(gl, kind="stable")
    start = np.searchsorted(gl[order], q_labels, side="left")
    stop = np.searchsorted(gl[order], q_labels, side="right")
    qi = np.repeat(np.arange(len(q)), stop - start)
    gi = order[np.concatenate([np.arange(a, b) for a, b in zip(start, stop, strict=True)]
                              or [np.zeros(0, dtype=np.int64)]).astype(np.int64)]
    valid = ~((q_cams[qi] >= 0) & (gc[gi] >= 0) & (q_cams[qi] == gc[gi]))
    qi, gi = qi[valid], gi[valid]
    return np.einsum("ij,ij->i", q[qi], g[gi])


def pair_scores(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                kept: np.ndarray | None = None, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarity, same identity) of every valid, indexed query-gallery pair (all in
    memory: for small sets, tests and benchmarks)."""
    parts = list(_pair_chunks(queries, q_labels, q_cams, gallery, g_labels, g_cams, kept, chunk))
    if not parts:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """fast-reid's operating point: the TPR of the curve point whose FPR is nearest the
    target (the first such point, curve ordered from the highest threshold down)."""
    return float(tpr[int(np.argmin(np.abs(np.asarray(fpr) - target)))])


def thin_curve(fpr: np.ndarray, points: int = CURVE_POINTS) -> np.ndarray:
    """Indices of curve points to store for the figure: the last point at or below each of
    ``points / 2`` log-spaced and ``points / 2`` linear-spaced FPRs, plus both ends."""
    positive = fpr[fpr > 0]
    grid = np.linspace(0.0, 1.0, points // 2)
    if len(positive):
        grid = np.concatenate([grid, np.geomspace(positive.min(), 1.0, points // 2)])
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return np.unique(np.concatenate([[0, len(fpr) - 1], np.clip(idx, 0, len(fpr) - 1)]))


@dataclass(frozen=True)
class ExactRoc:
    """The exact ROC of (score, positive) pairs, kept as counts.

    ``values``: the distinct scores of positive pairs, ascending; per value: ``positives``
    (pairs with that score), ``negatives_below`` and ``negatives_equal`` (negative pairs
    with a smaller / the same score).
    """
    values: np.ndarray
    positives: np.ndarray
    negatives_below: np.ndarray
    negatives_equal: np.ndarray
    n_pos: int
    n_neg: int

    def auc(self) -> float:
        """P(positive scores above a negative) + half P(tie): the Mann-Whitney statistic, in
        integers until the one division (= the trapezoid area under the exact curve)."""
        wins = int(np.sum(self.positives * (2 * self.negatives_below + self.negatives_equal)))
        return wins / (2 * self.n_pos * self.n_neg)

    def corners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple]]:
        """The exact curve's corners in counts: (false positives, true positives, kept by
        scikit-learn, horizontal segments), from the highest threshold down.

        Lowering the threshold past negatives alone moves the curve right, past positives
        alone up, past a tie of both diagonally. The corners are the origin, the point at
        each positive score s (descending) and the end of the run of negatives below it;
        every point of scikit-learn's curve lies on this polyline. ``kept`` marks the
        corners ``roc_curve(drop_intermediate=True)`` (fast-reid's call) keeps: it drops
        the point at s when no negative lies between s and the next lower positive score
        and both carry the same (negatives, positives) counts (collinear, equal steps).
        Each horizontal segment (a run of negatives between positive scores) is
        (index of its first corner, lower score, upper score) with the scores exclusive;
        its last point is the next corner.
        """
        m, n_neg = len(self.values), self.n_neg
        below, equal, positives = self.negatives_below, self.negatives_equal, self.positives
        pos_ge = np.cumsum(positives[::-1])[::-1]  # positives >= values[j]
        neg_ge = n_neg - below
        neg_gt = neg_ge - equal
        fp, tp, kept, segments = [0], [0], [True], []
        head = int(neg_gt[-1]) if m else n_neg
        if head:  # negatives above every positive: the first segment, from the origin
            segments.append((0, float(self.values[-1]) if m else -np.inf, np.inf))
            fp.append(head)
            tp.append(0)
            kept.append(True)
        for j in range(m - 1, -1, -1):
            run = int((neg_gt[j - 1] if j else n_neg) - neg_ge[j])  # negatives below, above the next
            dropped = (j > 0 and run == 0 and equal[j - 1] == equal[j]
                       and positives[j - 1] == positives[j]
                       and not (j == m - 1 and head == 0))  # the first point is always kept
            fp.append(int(neg_ge[j]))
            tp.append(int(pos_ge[j]))
            kept.append(not dropped)
            if run:
                segments.append((len(fp) - 1, float(self.values[j - 1]) if j else -np.inf,
                                 float(self.values[j])))
                fp.append(int(neg_ge[j]) + run)
                tp.append(int(pos_ge[j]))
                kept.append(True)
        return np.array(fp), np.array(tp), np.array(kept), segments

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fpr, tpr) at every corner of the exact curve (repeats dropped)."""
        fp, tp, _, _ = self.corners()
        unique = np.ones(len(fp), dtype=bool)
        unique[1:] = (np.diff(fp) != 0) | (np.diff(tp) != 0)
        return fp[unique] / self.n_neg, tp[unique] / self.n_pos


def fast_reid_tpr_at_fpr(roc: ExactRoc, chunks, targets: Sequence[float]) -> list[float]:
    """fast-reid's TPR@FPR (:func:`tpr_at_fpr` on scikit-learn's ``roc_curve``), exactly,
    without that curve: the corners scikit-learn keeps, plus, where a target falls inside a
    run of negatives, the points scikit-learn keeps inside that run (each distinct negative
    score whose count differs from the next lower one's), found in one more pass."""
    fp, tp, kept, segments = roc.corners()
    n = roc.n_neg
    inside = {}
    for target in targets:
        for first, low, high in segments:
            if fp[first] < target * n < fp[first + 1]:
                inside[target] = (first, low, high)
    runs: dict[tuple, list] = {seg: [] for seg in set(inside.values())}
    if runs:
        for scores, positive in chunks():
            neg = scores[~positive]
            for (_, low, high), parts in runs.items():
                parts.append(neg[(neg > low) & (neg < high)])
    out = []
    for target in targets:
        cand_fp, cand_tp = fp[kept], tp[kept]
        if target in inside:
            first, low, high = inside[target]
            values, counts = np.unique(np.concatenate(runs[inside[target]]), return_counts=True)
            counts = counts[::-1]  # descending scores
            steps = fp[first] + np.cumsum(counts)
            keep = np.ones(len(counts), dtype=bool)
            keep[:-1] = counts[:-1] != counts[1:]
            if first == 0:
                keep[0] = True  # the highest score of all is scikit-learn's first point
            keep[-1] = False  # the run's last point is the next corner, already listed
            at = int(np.sum(kept[:first + 1]))  # insert after the run's first corner
            cand_fp = np.concatenate([cand_fp[:at], steps[keep], cand_fp[at:]])
            cand_tp = np.concatenate([cand_tp[:at], np.full(int(keep.sum()), tp[first]), cand_tp[at:]])
        out.append(tpr_at_fpr(cand_fp / n, cand_tp / roc.n_pos, target))
    return out


def exact_roc(chunks, positive_scores: np.ndarray | None = None) -> ExactRoc:
    """Build :class:`ExactRoc` from a re-iterable of (scores, positive) chunks: the positive
    scores (few) are kept, the negatives (53 M on Market-1501) only counted against them,
    so memory stays that of one chunk plus the positives. ``positive_scores``, when the
    caller has them, saves the first of the two passes."""
    if positive_scores is None:
        positive_scores = np.concatenate([scores[positive] for scores, positive in chunks()]
                                         or [np.zeros(0)])
    pos = np.asarray(positive_scores, dtype=np.float64)
    values, counts = np.unique(pos, return_counts=True)
    m = len(values)
    below = np.zeros(m, dtype=np.int64)
    equal = np.zeros(m, dtype=np.int64)
    n_neg = 0
    for scores, positive in chunks():
        n_neg += int((~positive).sum())
        if m:
            # Sorting the chunk's negatives and searching the few positive values in them is
            # far faster than searching millions of unsorted negatives among the positives.
            neg = np.sort(scores[~positive])
            left = np.searchsorted(neg, values, side="left")
            below += left
            equal += np.searchsorted(neg, values, side="right") - left
    return ExactRoc(values, counts.astype(np.int64), below, equal, int(len(pos)), n_neg)


def pair_similarity_roc(queries: np.ndarray, q_labels: np.ndarray, q_cams: np.ndarray,
                        gallery: np.ndarray, g_labels: np.ndarray, g_cams: np.ndarray,
                        kept: np.ndarray | None = None, fpr_targets: Sequence[float] = FPR_TARGETS,
                        points: int = CURVE_POINTS, chunk: int = 1024,
                        similarity: Similarity | None = None) -> dict:
    """Exact ROC of same/different-identity pairs (valid, indexed pairs only) by cosine
    similarity (threshold t: pairs with similarity >= t are called the same person).

    Computed without sorting the pairs (:func:`exact_roc`): equal to scikit-learn's
    ``roc_curve``/``auc`` on the same pairs (tested), in the memory of one chunk. TPR at
    each FPR target as fast-reid reads it; only the stored ``fpr``/``tpr`` corners are
    thinned for the figure (``thin_curve``; ``curve_points`` is the full count).
    """
    def chunks():
        return _pair_chunks(queries, q_labels, q_cams, gallery, g_labels, g_cams, kept, chunk,
                            similarity)

    # Another search's positive scores come from the chunks (one more pass).
    positives = None if similarity is not None else positive_pair_scores(
        queries, q_labels, q_cams, gallery, g_labels, g_cams, kept)
    roc = exact_roc(chunks, positives)
    out: dict = {"positive_pairs": roc.n_pos, "negative_pairs": roc.n_neg}
    keys = [f"tpr_at_fpr_{target:.0e}" for target in fpr_targets]
    if roc.n_pos == 0 or roc.n_neg == 0:
        out.update({"auc": None, **dict.fromkeys(keys), "curve_points": 0, "fpr": [], "tpr": []})
        return out
    fpr, tpr = roc.curve()
    out["auc"] = _rounded(roc.auc())
    for key, value in zip(keys, fast_reid_tpr_at_fpr(roc, chunks, fpr_targets), strict=True):
        out[key] = _rounded(value)
    out["curve_points"] = int(len(fpr))
    keep = thin_curve(fpr, points)
    out["fpr"] = [round(float(v), 10) for v in fpr[keep]]
    out["tpr"] = [round(float(v), 10) for v in tpr[keep]]
    return out

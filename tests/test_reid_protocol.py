"""Re-ID protocol (CMC Rank-1/5/10, mAP, mINP with same-camera same-id gallery images dropped)
and the exact pair-similarity ROC, on hand-made cases, against torchreid's loop and against
scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from overlearning.evaluate.ranking import l2_normalise
from overlearning.evaluate.reid_protocol import (
    exact_roc,
    fast_reid_tpr_at_fpr,
    pair_similarity_roc,
    reid_protocol,
    tpr_at_fpr,
)


def _unit(degrees) -> np.ndarray:
    a = np.deg2rad(np.asarray(degrees, dtype=float))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


# Two queries and five gallery images on the unit circle (angle = dissimilarity).
Q = _unit([0, 60])
QL, QC = np.array([1, 2]), np.array([1, 2])
G = _unit([5, 20, 10, 30, 60])
GL, GC = np.array([1, 1, 2, 3, 2]), np.array([1, 2, 1, 2, 2])


def test_hand_made_case():
    # q0: g0 (same id, same camera) dropped; ranking g2 g1 g3 g4: first hit at 2, AP 1/2.
    # q1: g4 dropped; ranking g3 g1 g2 g0: first hit at 3, AP 1/3.
    study, indexed = reid_protocol(Q, QL, QC, G, GL, GC)
    for result in (study, indexed):
        assert result.cmc == {1: 0.0, 5: 1.0, 10: 1.0}
        assert result.mean_ap == pytest.approx((1 / 2 + 1 / 3) / 2)
        assert result.scored_queries == 2
        # One correct match each: INP = 1 / its rank.
        assert result.mean_inp == pytest.approx((1 / 2 + 1 / 3) / 2)


def test_hand_made_case_with_exclusion():
    kept = np.array([True, False, True, True, True])  # q0's only valid match is excluded
    study, indexed = reid_protocol(Q, QL, QC, G, GL, GC, kept)
    # Study reading: q0 still has a correct match (never found): AP 0, no hit at any rank.
    # q1: ranking g3 g2 g0, hit at 2, AP 1/2.
    assert study.scored_queries == 2
    assert study.cmc == {1: 0.0, 5: 0.5, 10: 0.5}
    assert study.mean_ap == pytest.approx(0.25)
    # q0's hardest (only) match is never found: INP 0; q1: 1 match at rank 2.
    assert study.mean_inp == pytest.approx(0.25)
    # Indexed reading: q0 has no indexed match and is skipped, as torchreid would.
    assert indexed.scored_queries == 1
    assert indexed.cmc == {1: 0.0, 5: 1.0, 10: 1.0}
    assert indexed.mean_ap == pytest.approx(0.5)
    assert indexed.mean_inp == pytest.approx(0.5)
    assert study.summary()["mINP"] == 0.25



def test_unknown_cameras_drop_nothing():
    study, _ = reid_protocol(Q, QL, np.array([-1, -1]), G, GL, np.full(5, -1))
    # q0 keeps g0: hits at 1 (g0) and 3 (g1); q1 keeps g4: hits at 1 (g4) and 4 (g2).
    assert study.cmc[1] == 1.0
    assert study.mean_ap == pytest.approx(((1 + 2 / 3) / 2 + (1 + 2 / 4) / 2) / 2)
    # INP = matches / rank of the hardest: q0 2 / 3, q1 2 / 4.
    assert study.mean_inp == pytest.approx((2 / 3 + 2 / 4) / 2)


def test_minp_hand_computed_with_partial_exclusion():
    # One query (identity 1, camera 1) and six gallery images on a line of angles; the
    # correct matches (other cameras) are at ranks 1, 3 and 6.
    q = _unit([0])
    g = _unit([1, 2, 3, 4, 5, 6])
    gl, gc = np.array([1, 2, 1, 3, 4, 1]), np.array([2, 2, 3, 2, 2, 2])
    study, indexed = reid_protocol(q, np.array([1]), np.array([1]), g, gl, gc)
    assert study.mean_inp == pytest.approx(3 / 6) and indexed.mean_inp == pytest.approx(3 / 6)
    # Excluding the hardest match: the study reading never finds it (INP 0); indexed, the
    # hardest of the 2 remaining is at rank 3 of the 5 listed images.
    kept = np.array([True, True, True, True, True, False])
    study, indexed = reid_protocol(q, np.array([1]), np.array([1]), g, gl, gc, kept)
    assert study.mean_inp == 0.0
    assert indexed.mean_inp == pytest.approx(2 / 3)
    # Excluding an easy one (rank 3) and a distractor (rank 2): 2 matches, the hardest at 4.
    kept = np.array([True, False, False, True, True, True])
    study, indexed = reid_protocol(q, np.array([1]), np.array([1]), g, gl, gc, kept)
    assert study.mean_inp == 0.0
    assert indexed.mean_inp == pytest.approx(2 / 4)


def _torchreid_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10):
    """torchreid.metrics.rank.eval_market1501, transcribed as a plain loop."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp, num_valid_q = [], [], [], 0.0
    for q_idx in range(len(q_pids)):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][~remove]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        hardest = np.flatnonzero(raw_cmc).max()  # torchreid/fast-reid mINP
        all_inp.append(cmc[hardest] / (hardest + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.0
        tmp = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0) * raw_cmc
        all_ap.append(tmp.sum() / raw_cmc.sum())
    return np.asarray(all_cmc).sum(0) / num_valid_q, float(np.mean(all_ap)), float(np.mean(all_inp))


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_torchreid_loop_on_random_data(seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(120, 16)), rng.normal(size=(400, 16))
    ql, gl = rng.integers(0, 40, 120), rng.integers(0, 40, 400)
    qc, gc = rng.integers(0, 3, 120), rng.integers(0, 3, 400)
    kept = rng.random(400) > 0.3
    study, indexed = reid_protocol(q, ql, qc, g, gl, gc, chunk=50)
    dist = -(l2_normalise(q) @ l2_normalise(g).T)
    cmc, mean_ap, mean_inp = _torchreid_market(dist, ql, gl, qc, gc)
    assert indexed.mean_ap == pytest.approx(mean_ap, rel=1e-9)
    assert indexed.mean_inp == pytest.approx(mean_inp, rel=1e-9)
    assert study.mean_inp == pytest.approx(mean_inp, rel=1e-9)
    for r in (1, 5, 10):
        assert study.cmc[r] == pytest.approx(cmc[r - 1], rel=1e-9)
    # With exclusion, the indexed reading is torchreid on the gallery minus excluded images.
    _, indexed_excl = reid_protocol(q, ql, qc, g, gl, gc, kept, chunk=64)
    cmc_k, map_k, inp_k = _torchreid_market(dist[:, kept], ql, gl[kept], qc, gc[kept])
    assert indexed_excl.mean_ap == pytest.approx(map_k, rel=1e-9)
    assert indexed_excl.mean_inp == pytest.approx(inp_k, rel=1e-9)
    assert indexed_excl.cmc[5] == pytest.approx(cmc_k[4], rel=1e-9)


def _pairs(q, ql, qc, g, gl, gc, kept):
    """Valid indexed pairs written plainly: float64 similarity, same identity."""
    qn, gn = l2_normalise(q).astype(np.float64), l2_normalise(g[kept]).astype(np.float64)
    sims = qn @ gn.T
    same = ql[:, None] == gl[kept][None, :]
    valid = ~(same & (qc[:, None] == gc[kept][None, :]))
    return sims[valid], same[valid]


def test_roc_counts_valid_pairs_and_equals_sklearn():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(80, 6)), rng.normal(size=(150, 6))
    ql, gl = rng.integers(0, 8, 80), rng.integers(0, 8, 150)
    qc, gc = rng.integers(0, 2, 80), rng.integers(0, 2, 150)
    kept = rng.random(150) > 0.2
    roc = pair_similarity_roc(q, ql, qc, g, gl, gc, kept, points=40)
    scores, same = _pairs(q, ql, qc, g, gl, gc, kept)
    assert roc["positive_pairs"] == int(same.sum())
    assert roc["negative_pairs"] == int((~same).sum())
    assert roc["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-9)
    # The stored points are points of scikit-learn's curve, ends included, thinned.
    fpr, tpr, _ = roc_curve(same, scores, drop_intermediate=False)
    assert roc["curve_points"] > len(roc["fpr"])
    stored = set(zip(roc["fpr"], roc["tpr"], strict=True))
    assert stored <= {(round(a, 10), round(b, 10)) for a, b in zip(fpr, tpr, strict=True)}
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and roc["fpr"][-1] == roc["tpr"][-1] == 1.0
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= 0)


@pytest.mark.parametrize("decimals", [2, 12])
def test_exact_roc_equals_sklearn_with_ties_and_chunks(decimals):
    """Counting the negatives against the positive scores (no sort of all pairs) gives
    scikit-learn's AUC and fast-reid's TPR@FPR on scikit-learn's curve, ties included."""
    rng = np.random.default_rng(4)
    positive = rng.random(6000) < 0.1
    scores = np.round(rng.normal(size=6000) + 1.5 * positive, decimals)  # 2 decimals: many ties
    chunks = [(scores[i:i + 700], positive[i:i + 700]) for i in range(0, 6000, 700)]
    roc = exact_roc(lambda: iter(chunks))
    assert roc.auc() == pytest.approx(roc_auc_score(positive, scores), abs=1e-12)
    fpr, tpr = roc.curve()
    sk_fpr, sk_tpr, _ = roc_curve(positive, scores)  # fast-reid's call: intermediates dropped
    targets = np.geomspace(1e-4, 0.9, 60)
    ours = fast_reid_tpr_at_fpr(roc, lambda: iter(chunks), targets)
    assert ours == [tpr_at_fpr(sk_fpr, sk_tpr, target) for target in targets]
    # Every corner is a point of the full curve, and the polyline has the same area.
    full = set(zip(*roc_curve(positive, scores, drop_intermediate=False)[:2], strict=True))
    assert set(zip(fpr, tpr, strict=True)) <= full
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc.auc(), abs=1e-12)


def test_roc_is_exact_when_similarities_lie_within_1e_6():
    """The demo's failure: all similarities in one tiny range. A histogram put every pair
    in one bin (AUC 0.5); the exact curve sees the ordering."""
    rng = np.random.default_rng(3)
    n_id = 10
    centres = rng.normal(size=(n_id, 15))
    ql, gl = np.repeat(np.arange(n_id), 4), np.repeat(np.arange(n_id), 8)

    def near_pole(labels):
        # A common direction plus tiny identity offsets plus tinier noise.
        x = np.zeros((len(labels), 16))
        x[:, 0] = 1.0
        x[:, 1:] = 4e-4 * centres[labels] + 1e-4 * rng.normal(size=(len(labels), 15))
        return x

    q, g = near_pole(ql), near_pole(gl)
    qc, gc = np.zeros(len(ql), int), np.ones(len(gl), int)
    kept = np.ones(len(gl), bool)
    scores, same = _pairs(q, ql, qc, g, gl, gc, kept)
    assert scores.max() - scores.min() < 1e-5
    roc = pair_similarity_roc(q, ql, qc, g, gl, gc)
    expected = roc_auc_score(same, scores)
    assert expected > 0.9  # the case is not trivially at chance
    assert roc["auc"] == pytest.approx(expected, abs=1e-9)
    fpr, tpr, _ = roc_curve(same, scores)
    assert roc["tpr_at_fpr_1e-02"] > 0
    for target in (1e-4, 1e-3, 1e-2):
        assert roc[f"tpr_at_fpr_{target:.0e}"] == pytest.approx(tpr_at_fpr(fpr, tpr, target))


def test_tpr_at_fpr_takes_the_nearest_point_like_fast_reid():
    fpr = np.array([0.0, 0.0004, 0.0011, 0.02, 1.0])
    tpr = np.array([0.0, 0.3, 0.5, 0.8, 1.0])
    assert tpr_at_fpr(fpr, tpr, 1e-4) == 0.0    # |0 - 1e-4| < |4e-4 - 1e-4|
    assert tpr_at_fpr(fpr, tpr, 1e-3) == 0.5    # 1.1e-3 nearest
    assert tpr_at_fpr(fpr, tpr, 1e-2) == 0.5    # |1.1e-3 - 1e-2| < |2e-2 - 1e-2|


def test_roc_without_negatives_is_empty():
    q, g = _unit([0, 10]), _unit([5, 15])
    roc = pair_similarity_roc(q, np.array([1, 1]), np.array([1, 1]), g, np.array([1, 1]),
                              np.array([2, 2]))
    assert roc["positive_pairs"] == 4 and roc["negative_pairs"] == 0
    assert roc["auc"] is None and roc["tpr_at_fpr_1e-03"] is None and roc["fpr"] == []

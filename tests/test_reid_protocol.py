"""Re-ID protocol (CMC Rank-1/5/10, mAP with same-camera same-id gallery images dropped) and
the pair-similarity ROC, on a hand-made case and against torchreid's loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from overlearning.evaluate.ranking import l2_normalise
from overlearning.evaluate.reid_protocol import pair_similarity_roc, reid_protocol


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


def test_hand_made_case_with_exclusion():
    kept = np.array([True, False, True, True, True])  # q0's only valid match is excluded
    study, indexed = reid_protocol(Q, QL, QC, G, GL, GC, kept)
    # Study reading: q0 still has a correct match (never found): AP 0, no hit at any rank.
    # q1: ranking g3 g2 g0, hit at 2, AP 1/2.
    assert study.scored_queries == 2
    assert study.cmc == {1: 0.0, 5: 0.5, 10: 0.5}
    assert study.mean_ap == pytest.approx(0.25)
    # Indexed reading: q0 has no indexed match and is skipped, as torchreid would.
    assert indexed.scored_queries == 1
    assert indexed.cmc == {1: 0.0, 5: 1.0, 10: 1.0}
    assert indexed.mean_ap == pytest.approx(0.5)


def test_unknown_cameras_drop_nothing():
    study, _ = reid_protocol(Q, QL, np.array([-1, -1]), G, GL, np.full(5, -1))
    # q0 keeps g0: hits at 1 (g0) and 3 (g1); q1 keeps g4: hits at 1 (g4) and 4 (g2).
    assert study.cmc[1] == 1.0
    assert study.mean_ap == pytest.approx(((1 + 2 / 3) / 2 + (1 + 2 / 4) / 2) / 2)


def _torchreid_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=10):
    """torchreid.metrics.rank.eval_market1501, transcribed as a plain loop."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, num_valid_q = [], [], 0.0
    for q_idx in range(len(q_pids)):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][~remove]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_valid_q += 1.0
        tmp = raw_cmc.cumsum() / (np.arange(len(raw_cmc)) + 1.0) * raw_cmc
        all_ap.append(tmp.sum() / raw_cmc.sum())
    return np.asarray(all_cmc).sum(0) / num_valid_q, float(np.mean(all_ap))


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_torchreid_loop_on_random_data(seed):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(120, 16)), rng.normal(size=(400, 16))
    ql, gl = rng.integers(0, 40, 120), rng.integers(0, 40, 400)
    qc, gc = rng.integers(0, 3, 120), rng.integers(0, 3, 400)
    kept = rng.random(400) > 0.3
    study, indexed = reid_protocol(q, ql, qc, g, gl, gc, chunk=50)
    dist = -(l2_normalise(q) @ l2_normalise(g).T)
    cmc, mean_ap = _torchreid_market(dist, ql, gl, qc, gc)
    assert indexed.mean_ap == pytest.approx(mean_ap, rel=1e-9)
    for r in (1, 5, 10):
        assert study.cmc[r] == pytest.approx(cmc[r - 1], rel=1e-9)
    # With exclusion, the indexed reading is torchreid on the gallery minus excluded images.
    _, indexed_excl = reid_protocol(q, ql, qc, g, gl, gc, kept, chunk=64)
    cmc_k, map_k = _torchreid_market(dist[:, kept], ql, gl[kept], qc, gc[kept])
    assert indexed_excl.mean_ap == pytest.approx(map_k, rel=1e-9)
    assert indexed_excl.cmc[5] == pytest.approx(cmc_k[4], rel=1e-9)


def test_roc_counts_valid_pairs_and_matches_sklearn():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(80, 6)), rng.normal(size=(150, 6))
    ql, gl = rng.integers(0, 8, 80), rng.integers(0, 8, 150)
    qc, gc = rng.integers(0, 2, 80), rng.integers(0, 2, 150)
    kept = rng.random(150) > 0.2
    roc = pair_similarity_roc(q, ql, qc, g, gl, gc, kept, bins=4000)
    sims = l2_normalise(q) @ l2_normalise(g[kept]).T
    same = ql[:, None] == gl[kept][None, :]
    valid = ~(same & (qc[:, None] == gc[kept][None, :]))
    assert roc["positive_pairs"] == int((same & valid).sum())
    assert roc["negative_pairs"] == int((~same & valid).sum())
    assert roc["auc"] == pytest.approx(roc_auc_score(same[valid], sims[valid]), abs=2e-3)
    # At each threshold t the rates are exactly the fractions of pairs with similarity >= t.
    n = len(roc["thresholds"])
    assert len(roc["fpr"]) == len(roc["tpr"]) == n
    assert len(set(zip(roc["fpr"], roc["tpr"], strict=True))) == n  # repeats dropped
    for i in (n // 10, n // 2, 9 * n // 10):
        t = roc["thresholds"][i]
        assert roc["tpr"][i] == pytest.approx(np.mean(sims[valid & same] >= t), abs=2e-3)
        assert roc["fpr"][i] == pytest.approx(np.mean(sims[valid & ~same] >= t), abs=2e-3)
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0
    assert roc["thresholds"][0] == 1.0 and roc["fpr"][-1] == 1.0

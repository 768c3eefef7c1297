"""Exact exclusion-aware ranking: our blocked GEMM + selection against FAISS's IndexFlatL2.

The order is (squared L2 distance, reference index), FAISS's rule. Where FAISS's float32
arithmetic is exact (small integer coordinates) its ranking is the truth, ties included,
and ours must equal it; elsewhere ours must equal a float64 brute force.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from overlearning.evaluate.ranking import (
    DIRECT_BELOW,
    MISSING,
    knn_with_exclusion,
    l2_normalise,
    nearest_references,
)


def _faiss(queries: np.ndarray, refs: np.ndarray, fetch: int) -> np.ndarray:
    index = faiss.IndexFlatL2(refs.shape[1])
    index.add(np.ascontiguousarray(refs, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)[1]


def _exact(queries: np.ndarray, refs: np.ndarray, fetch: int) -> np.ndarray:
    """Float64 brute force: ascending distance, then ascending index."""
    q, r = queries.astype(np.float64), refs.astype(np.float64)
    out = []
    for row in q:
        dist = ((r - row) ** 2).sum(1)
        out.append(np.lexsort((np.arange(len(r)), dist))[:fetch])
    return np.array(out)


def _integer_points(rng, n: int, dim: int) -> np.ndarray:
    """Small integer coordinates: every float32 distance is exact, so ties are exact too,
    for FAISS's GEMM as for ours; a quarter of the points are duplicates of others."""
    x = rng.integers(0, 3, size=(n, dim)).astype(np.float32)
    copies = rng.choice(n, n // 4, replace=False)
    x[copies] = x[rng.integers(0, n, n // 4)]
    return x


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threshold", ["sampled", "exact"])
@pytest.mark.parametrize("fetch", [1, 7, 120])
def test_gemm_path_equals_faiss_with_exact_ties(threshold: str, fetch: int) -> None:
    rng = np.random.default_rng(fetch)
    x = _integer_points(rng, 1400, 96)
    assert len(x) * 96 >= DIRECT_BELOW  # both FAISS and we take the GEMM path
    ours = nearest_references(x, x, fetch, "cpu", threshold)
    theirs = _faiss(x, x, fetch)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(ours, _exact(x, x, fetch))
    # The data really has ties inside the rankings (duplicates, equal integer distances).
    assert any((np.diff(np.sort(((x - x[i]) ** 2).sum(1))[:fetch + 1]) == 0).any()
               for i in range(20))


def test_direct_path_equals_faiss_with_duplicates_and_near_ties() -> None:
    rng = np.random.default_rng(3)
    base = l2_normalise(rng.normal(size=(80, 16)))
    x = base[rng.integers(0, 80, 300)]                     # exact duplicates
    x = l2_normalise(x + rng.normal(scale=1e-4, size=x.shape) * (rng.random((300, 1)) < 0.3))
    assert len(x) * 16 < DIRECT_BELOW
    assert np.array_equal(nearest_references(x, x, 40, "cpu"), _faiss(x, x, 40))


def test_gemm_path_orders_near_ties_exactly() -> None:
    """Neighbours whose distances differ by about one float32 ulp: ours follows float64."""
    rng = np.random.default_rng(4)
    x = l2_normalise(rng.normal(size=(1200, 128)))
    # Near copies 1e-7 apart and exact copies: the GEMM alone cannot order these.
    x[600:800] = l2_normalise(x[:200] + rng.normal(scale=1e-7, size=(200, 128)))
    x[800:900] = x[100:200]
    for threshold in ("sampled", "exact"):
        assert np.array_equal(nearest_references(x, x, 30, "cpu", threshold), _exact(x, x, 30))


def test_knn_with_exclusion_same_as_faiss_backend_on_ties() -> None:
    rng = np.random.default_rng(5)
    x = _integer_points(rng, 1500, 90)
    kept = rng.random(1500) > 0.2
    self_index = np.where(rng.random(1500) > 0.3, np.arange(1500), MISSING)
    for k in (1, 5, 130):
        ours = knn_with_exclusion(x, x, k, kept, self_index, device="cpu")
        theirs = knn_with_exclusion(x, x, k, kept, self_index, backend="faiss")
        assert np.array_equal(ours, theirs)
        assert not np.isin(ours, np.flatnonzero(~kept)).any()


def test_fetch_bounds_and_backend_are_checked() -> None:
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="cannot fetch 4 of 3"):
        nearest_references(x, x, 4, "cpu")
    with pytest.raises(ValueError, match="unknown ranking backend"):
        knn_with_exclusion(x, x, 1, backend="annoy")  # type: ignore[arg-type]


def test_direct_path_in_reference_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few queries against many references: the direct distances are computed in chunks of
    references (memory stays bounded) and the ranking is unchanged."""
    import overlearning.evaluate.ranking as ranking

    rng = np.random.default_rng(6)
    refs = _integer_points(rng, 900, 24)
    queries = refs[:40]
    whole = nearest_references(queries, refs, 25, "cpu")
    monkeypatch.setitem(ranking._BLOCK_ELEMENTS, "cpu", 6720)  # 1 query x 280 references a chunk
    assert np.array_equal(nearest_references(queries, refs, 25, "cpu"), whole)
    assert np.array_equal(whole, _faiss(queries, refs, 25))

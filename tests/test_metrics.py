"""Retrieval metrics: equal to pytorch-metric-learning's AccuracyCalculator, with and without
index exclusion, on random embeddings and on a hand-computed case."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import return_results

from overlearning.core.errors import WorkflowInputError
from overlearning.evaluate.embeddings import EmbeddingSet, save_embedding_set
from overlearning.evaluate.metrics import evaluate_retrieval
from overlearning.evaluate.metrics_file import write_metrics
from overlearning.evaluate.ranking import MISSING, knn_with_exclusion, l2_normalise
from overlearning.evaluate.retrieval_inputs import Part, RetrievalInputs, load_retrieval_inputs

METRICS = ("mean_average_precision", "mean_average_precision_at_r")


def _set(x: np.ndarray, labels, persons=None, prefix="f") -> EmbeddingSet:
    n = len(labels)
    return EmbeddingSet(
        np.asarray(x, dtype=np.float32), np.asarray(labels, dtype=np.int64),
        np.array([f"{prefix}{i:04d}.jpg" for i in range(n)]),
        np.zeros(n, bool) if persons is None else np.asarray(persons, bool),
        np.full(n, -1, dtype=np.int64),
    )


def _pml(query, q_labels, ref, r_labels, ref_includes_query, knn_func=None) -> dict:
    calc = AccuracyCalculator(k="max_bin_count", include=METRICS, device=torch.device("cpu"),
                              knn_func=knn_func)
    return calc.get_accuracy(l2_normalise(query), q_labels, l2_normalise(ref), r_labels,
                             ref_includes_query)


def _ours(q: EmbeddingSet, r: EmbeddingSet, kept=None, self_index=None):
    kept = np.ones(len(r), bool) if kept is None else kept
    self_index = np.full(len(q), -1) if self_index is None else self_index
    return evaluate_retrieval(RetrievalInputs(q, r, kept, self_index, np.zeros(len(r), int)))


def _assert_equal(result, pml: dict) -> None:
    for name in METRICS:
        assert getattr(result, name) == pytest.approx(pml[name], rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_without_exclusion_queries_are_references_equals_pml(seed):
    rng = np.random.default_rng(seed)
    x, labels = rng.normal(size=(400, 24)), rng.integers(0, 60, 400)
    data = _set(x, labels)
    ours = _ours(data, data, self_index=np.arange(400))
    pml = _pml(x, labels, x, labels, True)
    _assert_equal(ours.study, pml)
    _assert_equal(ours.indexed, pml)
    assert ours.study.k == np.bincount(labels).max() - 1


@pytest.mark.parametrize("seed", [3, 4])
def test_without_exclusion_query_vs_gallery_equals_pml(seed):
    rng = np.random.default_rng(seed)
    g, gl = rng.normal(size=(500, 16)), rng.integers(0, 80, 500)
    q, ql = rng.normal(size=(150, 16)), rng.integers(0, 100, 150)  # some labels absent
    ours = _ours(_set(q, ql), _set(g, gl))
    _assert_equal(ours.study, _pml(q, ql, g, gl, False))
    assert ours.study.scored_queries == int(np.isin(ql, gl).sum())


def test_distractors_appended_to_self_included_references_equals_pml():
    """The non-person setting: queries = first part of the references, distractors after."""
    rng = np.random.default_rng(5)
    x, labels = rng.normal(size=(200, 12)), rng.integers(0, 30, 200)
    d, dl = rng.normal(size=(300, 12)), rng.integers(1000, 1100, 300)
    refs = _set(np.vstack([x, d]), np.concatenate([labels, dl]))
    ours = _ours(_set(x, labels), refs, self_index=np.arange(200))
    _assert_equal(ours.study, _pml(x, labels, np.vstack([x, d]), np.concatenate([labels, dl]), True))


def _hand_case():
    # Unit vectors at these angles; labels 1 = A, 2 = B.   A0  A1  B0  A2  B1
    angles = np.deg2rad([0, 12, 25, 40, 90])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return x, np.array([1, 1, 2, 1, 2])


def test_hand_computed_case_without_exclusion():
    x, labels = _hand_case()
    data = _set(x, labels)
    ours = _ours(data, data, self_index=np.arange(5))
    # k = 2. AP per query: A0 .5, A1 .5, B0 0, A2 .25, B1 .5; AP@R: .5 .5 0 .25 0
    np.testing.assert_allclose(ours.study.average_precision, [0.5, 0.5, 0.0, 0.25, 0.5])
    np.testing.assert_allclose(ours.study.average_precision_at_r, [0.5, 0.5, 0.0, 0.25, 0.0])
    assert ours.study.mean_average_precision == pytest.approx(0.35)
    assert ours.study.mean_average_precision_at_r == pytest.approx(0.25)
    _assert_equal(ours.study, _pml(x, labels, x, labels, True))


def test_hand_computed_case_with_exclusion():
    x, labels = _hand_case()
    data = _set(x, labels)
    kept = np.array([True, False, True, True, True])  # A1 leaves the index, stays a query
    ours = _ours(data, data, kept=kept, self_index=np.arange(5))
    assert not np.isin(1, ours.ranking)
    # Study reading: R over all references (A1 counts as a relevant item never found).
    np.testing.assert_allclose(ours.study.average_precision, [0.25, 0.5, 0.0, 0.25, 0.5])
    np.testing.assert_allclose(ours.study.average_precision_at_r, [0.25, 0.5, 0.0, 0.25, 0.0])
    assert ours.study.mean_average_precision == pytest.approx(0.3)
    assert ours.study.mean_average_precision_at_r == pytest.approx(0.2)
    # Indexed reading: R over kept references only.
    np.testing.assert_allclose(ours.indexed.average_precision, [0.5, 0.5, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(ours.indexed.average_precision_at_r, [0.0, 0.5, 0.0, 0.0, 0.0])
    assert ours.indexed.mean_average_precision == pytest.approx(0.4)
    assert ours.indexed.mean_average_precision_at_r == pytest.approx(0.1)


@pytest.mark.parametrize("seed", [6, 7])
def test_exclusion_query_vs_gallery_equals_pml_on_deleted_gallery(seed):
    rng = np.random.default_rng(seed)
    g, gl = rng.normal(size=(600, 16)), rng.integers(0, 70, 600)
    q, ql = rng.normal(size=(200, 16)), rng.integers(0, 70, 200)
    kept = rng.random(600) > 0.25
    ours = _ours(_set(q, ql), _set(g, gl), kept=kept)
    _assert_equal(ours.indexed, _pml(q, ql, g[kept], gl[kept], False))
    assert not np.isin(np.flatnonzero(~kept), ours.ranking).any()


def test_exclusion_of_distractors_with_self_included_equals_pml_on_deleted_set():
    rng = np.random.default_rng(8)
    x, labels = rng.normal(size=(150, 12)), rng.integers(0, 25, 150)
    d, dl = rng.normal(size=(250, 12)), rng.integers(500, 600, 250)
    kept_d = rng.random(250) > 0.3
    refs = _set(np.vstack([x, d]), np.concatenate([labels, dl]))
    kept = np.concatenate([np.ones(150, bool), kept_d])
    ours = _ours(_set(x, labels), refs, kept=kept, self_index=np.arange(150))
    _assert_equal(ours.indexed, _pml(x, labels, np.vstack([x, d[kept_d]]),
                                     np.concatenate([labels, dl[kept_d]]), True))


class _ExcludingKNN:
    """An independent exclusion-aware k-NN for PML (torch top-k on a masked distance matrix),
    i.e. the authors' approach without their padding bug."""

    def __init__(self, kept: np.ndarray) -> None:
        self.kept = torch.from_numpy(kept)

    def __call__(self, query, k, reference, ref_includes_query):
        fetch = k + 1 if ref_includes_query else k
        dist = torch.cdist(query.double(), reference.double())
        dist[:, ~self.kept] = float("inf")
        d, i = torch.topk(dist, fetch, largest=False, dim=1)
        return return_results(d, i, ref_includes_query)


@pytest.mark.parametrize("seed", [9, 10])
def test_exclusion_study_reading_equals_pml_with_exclusion_aware_knn(seed):
    """Queries stay queries; excluded ones (and excluded matches) are never retrieved, and
    R still counts them: PML with an exclusion-aware k-NN on the full reference set."""
    rng = np.random.default_rng(seed)
    x, labels = rng.normal(size=(300, 16)), rng.integers(0, 40, 300)
    d, dl = rng.normal(size=(200, 16)), rng.integers(900, 950, 200)
    ref_x, ref_l = np.vstack([x, d]), np.concatenate([labels, dl])
    kept = rng.random(500) > 0.2
    data, refs = _set(x, labels), _set(ref_x, ref_l)
    ours = _ours(data, refs, kept=kept, self_index=np.arange(300))
    _assert_equal(ours.study, _pml(x, labels, ref_x, ref_l, True, knn_func=_ExcludingKNN(kept)))


def _brute_force(q, ql, r, rl, kept, self_index):
    """Per-query definition, written plainly: rank kept references except the query itself."""
    sims = l2_normalise(q) @ l2_normalise(r).T
    out = {}
    for reading in ("study", "indexed"):
        counted = np.ones(len(rl), bool) if reading == "study" else kept
        rel = np.array([np.sum(counted & (rl == ql[i])) - int(self_index[i] >= 0 and counted[self_index[i]])
                        for i in range(len(ql))])
        k = rel.max()
        aps, aprs = [], []
        for i in range(len(ql)):
            if rel[i] == 0:
                continue
            order = [j for j in np.argsort(-sims[i], kind="stable") if kept[j] and j != self_index[i]][:k]
            hits = [rl[j] == ql[i] for j in order]
            ap = sum(sum(hits[:n + 1]) / (n + 1) for n in range(len(hits)) if hits[n]) / rel[i]
            apr = sum(sum(hits[:n + 1]) / (n + 1) for n in range(min(len(hits), rel[i])) if hits[n]) / rel[i]
            aps.append(ap)
            aprs.append(apr)
        out[reading] = (np.mean(aps), np.mean(aprs))
    return out


def test_excluded_queries_that_are_references_match_the_plain_definition():
    rng = np.random.default_rng(11)
    x, labels = rng.normal(size=(120, 8)), rng.integers(0, 15, 120)
    kept = rng.random(120) > 0.4  # many queries are themselves excluded
    ours = _ours(_set(x, labels), _set(x, labels), kept=kept, self_index=np.arange(120))
    expected = _brute_force(x, labels, x, labels, kept, np.arange(120))
    for reading in ("study", "indexed"):
        result = getattr(ours, reading)
        assert result.mean_average_precision == pytest.approx(expected[reading][0], rel=1e-9)
        assert result.mean_average_precision_at_r == pytest.approx(expected[reading][1], rel=1e-9)


def test_knn_with_exclusion_matches_a_python_loop_and_pads():
    rng = np.random.default_rng(12)
    q, r = l2_normalise(rng.normal(size=(50, 8))), l2_normalise(rng.normal(size=(40, 8)))
    kept = rng.random(40) > 0.5
    self_index = np.where(rng.random(50) > 0.5, rng.integers(0, 40, 50), -1)
    k = int(kept.sum()) + 3  # more than can be found: rows end in MISSING
    ranking = knn_with_exclusion(q, r, k, kept, self_index)
    sims = q @ r.T
    for i in range(50):
        expected = [j for j in np.argsort(-sims[i]) if kept[j] and j != self_index[i]]
        row = ranking[i]
        assert row[: len(expected)].tolist() == expected
        assert (row[len(expected):] == MISSING).all()


def _write_sets(tmp_path):
    rng = np.random.default_rng(13)
    n = 60
    labels = rng.integers(0, 10, n)
    persons = labels < 3
    vis = _set(rng.normal(size=(n, 8)), labels, persons, prefix="vid/00")
    ovis = _set(rng.normal(size=(30, 8)), rng.integers(100, 110, 30), prefix="ovid/00")
    save_embedding_set(tmp_path / "vis_test.npz", vis)
    save_embedding_set(tmp_path / "ovis_test.npz", ovis)
    return vis, ovis


def test_metrics_file_from_npz_parts_and_exclusion_json(tmp_path):
    vis, ovis = _write_sets(tmp_path)
    excluded = [str(f) for f, p in zip(vis.files, vis.persons, strict=True) if p][:5]
    exclusion = tmp_path / "vis_test.json"
    exclusion.write_text(json.dumps({"Detected Person Exclusion": excluded,
                                     "Misclassified Instance Inclusion": [str(vis.files[0])]}))
    query = Part(tmp_path / "vis_test.npz", "persons")
    refs = [Part(tmp_path / "vis_test.npz", "all", exclusion), Part(tmp_path / "ovis_test.npz")]
    inputs = load_retrieval_inputs(query, refs)
    # Each person query finds its own row in the first part (self), never in the second.
    assert (inputs.references.files[inputs.self_index] == inputs.queries.files).all()
    assert (~inputs.kept).sum() == 5
    out = tmp_path / "m" / "excluded.json"
    record = write_metrics(out, query, refs, reid=False,
                           meta={"setting": "ms", "evaluation": "person", "exclusion": "excluded"})
    first = out.read_bytes()
    write_metrics(out, query, refs, reid=False,
                  meta={"setting": "ms", "evaluation": "person", "exclusion": "excluded"})
    assert out.read_bytes() == first
    assert record["excluded_references"] == 5
    assert record["references"][0] == {"set": "vis_test", "subset": "all", "count": 60, "excluded": 5}
    # Without exclusion, the file's numbers are PML's on the same embeddings.
    plain = write_metrics(tmp_path / "none.json", query,
                          [Part(tmp_path / "vis_test.npz"), Part(tmp_path / "ovis_test.npz")],
                          reid=False, meta={})
    q = vis.select(vis.persons)
    ref_x = np.vstack([vis.embeddings, ovis.embeddings])
    ref_l = np.concatenate([vis.labels, ovis.labels])
    # PML needs the queries first among the references: reorder, the metric does not care.
    order = np.concatenate([np.flatnonzero(vis.persons), np.flatnonzero(~vis.persons),
                            np.arange(60, 90)])
    pml = _pml(q.embeddings, q.labels, ref_x[order], ref_l[order], True)
    for name in METRICS:
        assert plain["retrieval"][name] == pytest.approx(pml[name], abs=1e-9)


@pytest.mark.parametrize("content, message", [
    ({"Detected Person Exclusion": ["nope.jpg"]}, "not crops of the set"),
    ({"Some Other Category": []}, "unknown exclusion categories"),
    ({"Detected Person Exclusion": "vid/000000.jpg"}, "must list file names"),
    (["vid/000000.jpg"], "must be an object"),
])
def test_bad_exclusion_json_stops_with_its_path(tmp_path, content, message):
    _write_sets(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    with pytest.raises(WorkflowInputError, match=message) as info:
        load_retrieval_inputs(Part(tmp_path / "vis_test.npz"),
                              [Part(tmp_path / "vis_test.npz", "all", bad)])
    assert "bad.json" in str(info.value)


def test_missing_or_corrupt_embedding_file_stops(tmp_path):
    with pytest.raises(WorkflowInputError, match="not found"):
        load_retrieval_inputs(Part(tmp_path / "none.npz"), [Part(tmp_path / "none.npz")])
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(WorkflowInputError, match="corrupt.npz"):
        load_retrieval_inputs(Part(tmp_path / "corrupt.npz"), [Part(tmp_path / "corrupt.npz")])


def test_metrics_script_runs_a_plan_of_evaluations(tmp_path):
    """The `metrics` rule's script: one job, several evaluations, each file equal to the
    library's, provenance beside each."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    vis, _ = _write_sets(tmp_path)
    exclusion = tmp_path / "vis_test.json"
    exclusion.write_text(json.dumps({"Detected Person Exclusion": [str(vis.files[0])]}))
    vis_npz, ovis_npz = str(tmp_path / "vis_test.npz"), str(tmp_path / "ovis_test.npz")
    plan = [
        {"query": [vis_npz, "persons"], "references": [[vis_npz, "all", str(exclusion)],
                                                       [ovis_npz, "all", "-"]],
         "reid": False, "setting": "ms", "evaluation": "person", "exclusion": "excluded",
         "out": str(tmp_path / "metrics" / "person" / "excluded.json")},
        {"query": [vis_npz, "nonpersons"], "references": [[vis_npz, "nonpersons", "-"]],
         "reid": False, "setting": "ms", "evaluation": "nonperson", "exclusion": "none",
         "out": str(tmp_path / "metrics" / "nonperson" / "none.json")},
    ]
    subprocess.run([sys.executable, str(repo / "scripts" / "compute_metrics.py"),
                    "--plan", json.dumps(plan), "--attackers", '{"attackers": ["plain"]}'],
                   check=True, cwd=repo, capture_output=True, timeout=300)
    for job in plan:
        expected = tmp_path / "expected.json"
        write_metrics(expected, Part(job["query"][0], job["query"][1]),
                      [Part(npz, subset, None if excl == "-" else excl)
                       for npz, subset, excl in job["references"]],
                      reid=False, meta={k: job[k] for k in ("setting", "evaluation", "exclusion")})
        assert Path(job["out"]).read_bytes() == expected.read_bytes()
        assert Path(job["out"]).with_suffix(".provenance.json").exists()


class _AuthorsKNN:
    """The authors' exclusion-aware k-NN as their evaluation ran it, re-written plainly for
    PML: fetch k + |excluded| (+1 with self) over every reference, -1 beyond the index as
    FAISS returns it, drop excluded, keep k, pad with the last kept one (0 if none), then
    PML's own return_results."""

    def __init__(self, excluded: set[int]) -> None:
        self.excluded = excluded

    def __call__(self, query, k, reference, ref_includes_query):
        n_r = len(reference)
        fetch = min(k + len(self.excluded), n_r) + int(ref_includes_query)
        dist = torch.cdist(query.double(), reference.double())
        order = torch.argsort(dist, dim=1, stable=True)[:, :min(fetch, n_r)].tolist()
        rows = []
        for row in order:
            row = row + [-1] * (fetch - n_r)
            valid = [i for i in row if i not in self.excluded][:k]
            rows.append(valid + [valid[-1] if valid else 0] * (k - len(valid)))
        indices = torch.tensor(rows, dtype=torch.long)
        return return_results(torch.zeros(indices.shape), indices, ref_includes_query)


@pytest.mark.parametrize("seed, n_distractors, keep_rate", [(14, 200, 0.8), (15, 0, 0.7), (16, 0, 0.08)])
def test_authors_knn_equals_pml_with_their_exclusion_aware_knn(seed, n_distractors, keep_rate):
    """knn="authors": the study reading is what PML computed with the authors' k-NN (queries
    first among the references, as their person evaluation put them); the last case keeps
    fewer references than k, so rows are padded and FAISS's -1 appears."""
    rng = np.random.default_rng(seed)
    x, labels = rng.normal(size=(120, 8)), rng.integers(0, 12, 120)
    d, dl = rng.normal(size=(n_distractors, 8)), rng.integers(900, 950, n_distractors)
    ref_x, ref_l = np.vstack([x, d]), np.concatenate([labels, dl])
    kept = rng.random(len(ref_l)) < keep_rate
    data, refs = _set(x, labels), _set(ref_x, ref_l)
    ours = evaluate_retrieval(RetrievalInputs(data, refs, kept, np.arange(120),
                                              np.zeros(len(ref_l), int)), knn="authors")
    theirs = _pml(x, labels, ref_x, ref_l, True,
                  knn_func=_AuthorsKNN(set(np.flatnonzero(~kept).tolist())))
    _assert_equal(ours.study, theirs)
    assert ours.study.summary()["knn"] == "authors"
    exact = _ours(data, refs, kept=kept, self_index=np.arange(120))
    # The indexed reading is unchanged. The study reading can only lose the hit at rank k,
    # unless rows are padded (fewer kept references than k): repeated hits then inflate it.
    _assert_equal(ours.indexed, {m: getattr(exact.indexed, m) for m in METRICS})
    if kept.sum() > 20:
        assert ours.study.mean_average_precision <= exact.study.mean_average_precision + 1e-12
        assert ours.study.mean_average_precision_at_r <= exact.study.mean_average_precision_at_r + 1e-12
    else:
        assert ours.study.mean_average_precision > exact.study.mean_average_precision


def test_authors_knn_cuts_the_kth_neighbour_on_a_hand_case():
    x, labels = _hand_case()
    data = _set(x, labels)
    kept = np.array([True, True, True, True, False])  # B1 leaves the index
    exact = _ours(data, data, kept=kept, self_index=np.arange(5))
    ours = evaluate_retrieval(RetrievalInputs(data, data, kept, np.arange(5), np.zeros(5, int)),
                              knn="authors")
    # k = 2 (A has 3 members). Each row keeps the first 2 kept references, self included,
    # then loses its self match: A0 [A0 A1] -> A1, A1 [A1 A0] -> A0, B0 [B0 A1] -> A1,
    # A2 [A2 B0] -> B0; B1 is excluded, so its row [A2 B0] has no self match and PML drops
    # the last entry -> A2. AP = hits / R: .5, .5, 0, 0, 0.
    np.testing.assert_allclose(ours.study.average_precision, [0.5, 0.5, 0.0, 0.0, 0.0])
    # Exact lists hold 2 neighbours: A2 finds A1 at rank 2 (1/2 / 2), B1 finds B0 at rank 2.
    np.testing.assert_allclose(exact.study.average_precision, [0.5, 0.5, 0.0, 0.25, 0.5])
    # Without exclusion the authors ran plain PML: identical.
    plain = evaluate_retrieval(RetrievalInputs(data, data, np.ones(5, bool), np.arange(5),
                                               np.zeros(5, int)), knn="authors")
    assert "knn" not in plain.study.summary()
    _assert_equal(plain.study, _pml(x, labels, x, labels, True))


def test_metrics_script_passes_the_knn_switch(tmp_path):
    import runpy
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    vis, _ = _write_sets(tmp_path)
    exclusion = tmp_path / "vis_test.json"
    exclusion.write_text(json.dumps({"Detected Person Exclusion": [str(vis.files[0])]}))
    vis_npz = str(tmp_path / "vis_test.npz")
    out = tmp_path / "m.json"
    plan = [{"query": [vis_npz, "all"], "references": [[vis_npz, "all", str(exclusion)]],
             "reid": False, "setting": "ms", "evaluation": "e", "exclusion": "excluded",
             "out": str(out)}]
    main = runpy.run_path(str(repo / "scripts" / "compute_metrics.py"))["main"]
    main(["--plan", json.dumps(plan), "--knn", "authors", "--attackers", '{"attackers": ["plain"]}'])
    record = json.loads(out.read_text())
    assert record["retrieval"]["knn"] == "authors" and "knn" not in record["retrieval_indexed"]


def test_reid_metrics_file_holds_minp_and_the_exact_roc(tmp_path):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(17)
    q, g = _set(rng.normal(size=(20, 8)), rng.integers(0, 5, 20)), _set(rng.normal(size=(60, 8)), rng.integers(0, 5, 60))
    save_embedding_set(tmp_path / "q.npz", q)
    save_embedding_set(tmp_path / "g.npz", g)
    record = write_metrics(tmp_path / "m.json", Part(tmp_path / "q.npz"), [Part(tmp_path / "g.npz")],
                           reid=True, meta={})
    sims = l2_normalise(q.embeddings).astype(np.float64) @ l2_normalise(g.embeddings).astype(np.float64).T
    same = q.labels[:, None] == g.labels[None, :]
    assert record["roc"]["auc"] == pytest.approx(roc_auc_score(same.ravel(), sims.ravel()), abs=1e-9)
    assert set(record["roc"]) >= {"tpr_at_fpr_1e-04", "tpr_at_fpr_1e-03", "tpr_at_fpr_1e-02"}
    assert 0 < record["reid"]["mINP"] <= 1 and record["reid_indexed"]["mINP"] == record["reid"]["mINP"]

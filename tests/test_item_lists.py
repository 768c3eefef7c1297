"""The k-reciprocal attacker's neighbour lists shared by a group of evaluations: equal to each
evaluation's own lists in every case (derived, recomputed rows, vectors outside the union),
and the metrics script's records unchanged by the sharing."""

from __future__ import annotations

import gzip
import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from overlearning.evaluate.embeddings import EmbeddingSet, save_embedding_set
from overlearning.evaluate.item_lists import (
    SharedLists,
    direct_lists,
    group_evaluations,
    shared_by_group,
)
from overlearning.evaluate.ranking import l2_normalise

REPO = Path(__file__).resolve().parent.parent


def _clustered(rng, n: int, ids: int, dim: int, spread: float) -> np.ndarray:
    centres = rng.normal(size=(ids, dim))
    labels = rng.integers(0, ids, n)
    return l2_normalise((centres[labels] + spread * rng.normal(size=(n, dim))).astype(np.float32))


def _vis_like(seed: int = 1):
    """A query set whose persons sit together (so a non-person evaluation misses whole
    neighbourhoods of the union) and a larger second reference set."""
    rng = np.random.default_rng(seed)
    vis = _clustered(rng, 700, 60, 12, 0.3)
    persons = rng.random(len(vis)) < 0.3
    vis[persons] = l2_normalise(vis[persons] * 0.3 + np.ones(12, np.float32))
    other = _clustered(rng, 2500, 150, 12, 0.5)
    excluded = persons & (rng.random(len(vis)) < 0.8)
    return vis, other, persons, excluded


def _evaluations(vis, other, persons, excluded):
    """Items (queries, then kept references) of the four YouTube-VIS evaluations."""
    return {
        "nonperson/none": np.concatenate([vis[~persons], vis[~persons], other]),
        "person/none": np.concatenate([vis[persons], vis, other]),
        "nonperson/excluded": np.concatenate([vis[~persons], vis[~persons & ~excluded], other]),
        "person/excluded": np.concatenate([vis[persons], vis[~excluded], other]),
    }


def test_shared_lists_equal_each_evaluations_own_lists():
    vis, other, persons, excluded = _vis_like()
    shared = SharedLists(np.concatenate([vis, other]), "cpu", slack=4)
    for name, items in _evaluations(vis, other, persons, excluded).items():
        for width in (21, 7):
            expected = direct_lists(items, width, "cpu")
            got = shared.lists(items, width)
            assert np.array_equal(got[0], expected[0]), (name, width)
            assert np.array_equal(got[1], expected[1]), (name, width)
    # Both ways were taken: most items from the union's lists, and the items whose union
    # neighbours were mostly persons (missing from the non-person evaluations) directly.
    assert shared.derived > 10 * shared.recomputed > 0


def test_ties_at_the_end_of_the_union_lists_are_settled_by_the_evaluations_order():
    # Axis vectors: every two that are not opposite lie at exactly the same distance, so
    # each union list ends inside a tie that the union cut by its own row order; the
    # evaluation holds them in another order and must get its lowest indices first.
    axes = np.concatenate([np.eye(16, dtype=np.float32), -np.eye(16, dtype=np.float32)])
    items = axes[np.random.default_rng(2).permutation(len(axes))]
    shared = SharedLists(axes, "cpu", slack=2)
    expected = direct_lists(items, 7, "cpu")
    got = shared.lists(items, 7)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert shared.recomputed == len(items)


def test_farthest_candidates_all_missing_are_recomputed():
    # A tight cluster opposite everything: each item's farthest candidates are all in it,
    # and the evaluation leaves it out.
    rng = np.random.default_rng(4)
    body = _clustered(rng, 400, 20, 8, 0.4)
    opposite = l2_normalise((-body.mean(0) + 0.01 * rng.normal(size=(30, 8))).astype(np.float32))
    shared = SharedLists(np.concatenate([body, opposite]), "cpu", far=4)
    items = np.concatenate([body[:50], body])
    expected = direct_lists(items, 21, "cpu")
    got = shared.lists(items, 21)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert shared.recomputed > 0


def test_vectors_outside_the_union_fall_back_to_the_evaluations_own_lists():
    rng = np.random.default_rng(6)
    union = _clustered(rng, 300, 10, 8, 0.5)
    stranger = _clustered(rng, 5, 2, 8, 0.5)
    items = np.concatenate([union[:40], union, stranger])
    shared = SharedLists(union, "cpu")
    got = shared.lists(items, 21)
    expected = direct_lists(items, 21, "cpu")
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert shared.recomputed == len(items) and shared.derived == 0


def test_evaluations_reading_a_common_file_form_one_group():
    files = [["vis", "ovis"], ["cuhk_probe", "cuhk_gallery"], ["vis", "anon"], ["anon"],
             ["market"], ["cuhk_probe2", "cuhk_gallery"]]
    assert group_evaluations(files) == [0, 1, 0, 0, 2, 1]
    loaded = []
    shared = shared_by_group(files, lambda name: loaded.append(name) or np.zeros((1, 2)))
    assert shared[0] is shared[2] is shared[3] and shared[1] is shared[5]
    assert shared[0] is not shared[1] and shared[4] is None  # alone: its own passes
    assert loaded == []  # nothing is read before the lists are asked for


def _save(path: Path, vectors: np.ndarray, persons: np.ndarray, prefix: str) -> list[str]:
    files = np.array([f"{prefix}/{i:05d}.jpg" for i in range(len(vectors))])
    labels = (np.arange(len(vectors)) // 3).astype(np.int64)
    save_embedding_set(path, EmbeddingSet(vectors, labels, files, persons,
                                          np.full(len(vectors), -1, dtype=np.int64)))
    return files.tolist()


def _run_script(plan: list[dict], capsys) -> str:
    main = runpy.run_path(str(REPO / "scripts" / "compute_metrics.py"))["main"]
    settings = {"attackers": ["plain", "k_reciprocal"],
                "k_reciprocal": {"k1": 20, "k2": 6, "lambda": 0.3}}
    assert main(["--plan", json.dumps(plan), "--attackers", json.dumps(settings),
                 "--top-k", "5"]) == 0
    return capsys.readouterr().err


@pytest.mark.parametrize("seed", [1, 2])
def test_metrics_records_are_the_same_with_shared_lists(tmp_path, capsys, seed):
    vis, other, persons, excluded = _vis_like(seed)
    files = _save(tmp_path / "vis_test.npz", vis, persons, "vis")
    _save(tmp_path / "ovis_test.npz", other, np.zeros(len(other), bool), "ovis")
    lists = tmp_path / "exclusion.json"
    lists.write_text(json.dumps({"Detected Person Exclusion":
                                 [f for f, e in zip(files, excluded, strict=True) if e]}))

    def plan(root: Path) -> list[dict]:
        out = []
        for evaluation, subset, ref_subset in (("nonperson", "nonpersons", "nonpersons"),
                                               ("person", "persons", "all")):
            for exclusion in ("none", "excluded"):
                listed = str(lists) if exclusion == "excluded" else "-"
                out.append({
                    "query": [str(tmp_path / "vis_test.npz"), subset],
                    "references": [[str(tmp_path / "vis_test.npz"), ref_subset, listed,
                                    str(lists)],
                                   [str(tmp_path / "ovis_test.npz"), "all", "-", "-"]],
                    "reid": False, "setting": "s", "evaluation": evaluation,
                    "exclusion": exclusion, "out": str(root / evaluation / f"{exclusion}.json")})
        return out

    together = plan(tmp_path / "together")
    log = _run_script(together, capsys)
    assert "shared neighbour lists (4 evaluations over 2 embedding files" in log
    derived = int(log.split("shared neighbour lists")[1].split(": ")[1].split(" items")[0])
    assert derived > 0
    for job in plan(tmp_path / "alone"):  # one evaluation per run: its own passes
        assert "shared neighbour lists" not in _run_script([job], capsys)
    for a, b in zip(together, plan(tmp_path / "alone"), strict=True):
        first, second = Path(a["out"]), Path(b["out"])
        assert first.read_bytes() == second.read_bytes(), first
        evidence = [gzip.decompress(p.with_name(p.stem + ".queries.csv.gz").read_bytes())
                    for p in (first, second)]
        assert evidence[0] == evidence[1], first
        assert "k_reciprocal" in json.loads(first.read_text())["attackers"]

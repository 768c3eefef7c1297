"""Figures are written as real PNGs with the content they promise."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from overlearning.core.errors import WorkflowInputError
from overlearning.evaluate.attackers import AttackerSettings
from overlearning.evaluate.embedding_map import embedding_map
from overlearning.evaluate.embeddings import EmbeddingSet, save_embedding_set
from overlearning.evaluate.figures import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    leak_strips,
    privacy_utility_plot,
    query_grid,
    read_attacker_evidence,
    roc_figure,
)
from overlearning.evaluate.metrics_file import write_metrics
from overlearning.evaluate.retrieval_inputs import Part


def _records():
    out = []
    for setting, base in (("ms", 0.8), ("confusion", 0.7)):
        for exclusion, factor in (("none", 1.0), ("excluded", 0.5)):
            for evaluation, value in (("nonperson", base), ("person", base * factor / 3),
                                      ("market1501", base * factor / 4)):
                record = {"setting": setting, "exclusion": exclusion, "evaluation": evaluation,
                          "retrieval": {"mean_average_precision_at_r": value}}
                if evaluation == "market1501":
                    fpr = np.linspace(0, 1, 50)
                    record["roc"] = {"auc": 0.8, "fpr": fpr.tolist(),
                                     "tpr": np.sqrt(fpr).tolist(), "tpr_at_fpr_1e-04": 0.01,
                                     "tpr_at_fpr_1e-03": 0.03, "tpr_at_fpr_1e-02": 0.1}
                out.append(record)
    return out


def _coloured_pixels(path) -> int:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((rgb.max(axis=2) - rgb.min(axis=2) > 60).sum())


def test_privacy_utility_and_roc_figures_are_written(tmp_path):
    pu = privacy_utility_plot(_records(), tmp_path / "pu.png", "nonperson",
                              ["person", "market1501"])
    roc = roc_figure(_records(), tmp_path / "roc.png", ["market1501"])
    for path in (pu, roc):
        image = Image.open(path)
        assert image.format == "PNG" and image.width > 300
        assert _coloured_pixels(path) > 100  # markers / curves drawn in colour
    again = privacy_utility_plot(_records(), tmp_path / "pu2.png", "nonperson",
                                 ["person", "market1501"])
    assert again.read_bytes() == pu.read_bytes()


def test_figures_refuse_missing_data(tmp_path):
    with pytest.raises(WorkflowInputError):
        roc_figure(_records(), tmp_path / "roc.png", ["cuhk03_labeled"])
    with pytest.raises(WorkflowInputError):
        privacy_utility_plot(_records(), tmp_path / "pu.png", "nonperson", ["cuhk03_labeled"])
    assert not list(tmp_path.iterdir())


def _random_set(n, seed):
    rng = np.random.default_rng(seed)
    persons = rng.random(n) < 0.3
    x = rng.normal(size=(n, 16)) + 4 * persons[:, None]
    return EmbeddingSet(x.astype(np.float32), np.arange(n), np.array([f"{i}.jpg" for i in range(n)]),
                        persons, np.full(n, -1))


def test_embedding_map_tsne(tmp_path):
    out = embedding_map([("ms", _random_set(120, 0)), ("confusion", _random_set(90, 1))],
                        tmp_path / "map.png", "tsne", seed=123, max_points=100)
    assert Image.open(out).width > 400
    assert _coloured_pixels(out) > 50  # red person points


def test_embedding_map_says_so_for_a_set_too_small_to_map(tmp_path, capsys):
    out = embedding_map([("ms", _random_set(120, 0)), ("confusion", _random_set(3, 1))],
                        tmp_path / "map.png", "tsne", seed=123, max_points=100)
    assert _coloured_pixels(out) > 50  # the mappable panel is drawn
    assert "confusion: only 3 embeddings, too few for a t-SNE map" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("umap") is not None, reason="umap-learn installed")
def test_embedding_map_umap_without_package_is_a_clear_error(tmp_path):
    with pytest.raises(WorkflowInputError, match="umap-learn"):
        embedding_map([("ms", _random_set(50, 0))], tmp_path / "map.png", "umap", 1, 50)


def _stored_evidence(tmp_path, data, top_k, attackers=("plain",), reid=False, query=None):
    """What a metrics job stores for ``data`` searched in itself (or ``query`` in it)."""
    save_embedding_set(tmp_path / "crops.npz", data)
    queries = tmp_path / "crops.npz"
    if query is not None:
        save_embedding_set(tmp_path / "probes.npz", query)
        queries = tmp_path / "probes.npz"
    write_metrics(tmp_path / "m.json", Part(queries), [Part(tmp_path / "crops.npz")], reid,
                  {"setting": "s", "evaluation": "e", "exclusion": "none"},
                  attackers=AttackerSettings(tuple(attackers)), top_k=top_k)
    return read_attacker_evidence(tmp_path / "m.queries.csv.gz",
                                  None if len(attackers) > 1 else attackers[0])


def test_query_grid_borders_mark_correct_and_wrong_neighbours(tmp_path):
    # Labels 0, 1, 2 with two crops each; embeddings put each crop next to its twin, except
    # crop 5 (label 2) which sits next to label 0.
    x = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [-1, 0], [0.95, -0.3]], np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    files = np.array([f"v/{i}_{label}.png" for i, label in enumerate(labels)])
    (tmp_path / "img" / "v").mkdir(parents=True)
    for i, name in enumerate(files):
        Image.new("RGB", (30, 50), (40 * i, 200 - 30 * i, 90)).save(tmp_path / "img" / name)
    data = EmbeddingSet(x, labels, files, np.zeros(6, bool), np.full(6, -1))
    evidence = _stored_evidence(tmp_path, data, 3)
    out = query_grid(evidence, tmp_path / "img", {"crops": tmp_path / "img"},
                     tmp_path / "grid.png", queries=2, neighbours=3, title="test", tile=40,
                     border=4)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    label_w, tile = 110, 40
    # Query tiles (blue borders) run down one column: the best block, a gap, the worst block.
    blue = np.all(sheet[:, label_w + 1] == BLUE, axis=1)
    starts = np.flatnonzero(blue & ~np.roll(blue, 1))
    assert len(starts) == 2, "two blocks of query rows expected"
    best_y, worst_y = starts
    # Best block, first row: query 2 or 3 (AP 1), first neighbour its twin: green border.
    assert tuple(sheet[best_y + 1, label_w + tile + 1]) == GREEN
    # Worst block, first row: its first neighbour has another label: red border.
    assert tuple(sheet[worst_y + 1, label_w + tile + 1]) == RED
    # Above the rows: the key (a swatch of every border colour, grey included although no
    # tile is grey here) and the column headers (text over the query column).
    above = sheet[:best_y]
    for colour in (BLUE, GREEN, RED, GREY):
        assert np.all(above == colour, axis=2).sum() >= 100, colour
    header_band = sheet[best_y - 60:best_y, label_w:label_w + tile]
    assert (header_band.min(axis=2) < 128).sum() > 10, "no column header over the query column"


def test_query_grid_without_any_relevant_reference_draws_one_block(tmp_path, capsys):
    # Every label occurs once: no query has a relevant reference, AP@R is undefined for all.
    x = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    labels = np.array([0, 1, 2])
    files = np.array([f"v/{i}.png" for i in range(3)])
    (tmp_path / "img" / "v").mkdir(parents=True)
    for name in files:
        Image.new("RGB", (30, 50), (90, 90, 90)).save(tmp_path / "img" / name)
    data = EmbeddingSet(x, labels, files, np.zeros(3, bool), np.full(3, -1))
    evidence = _stored_evidence(tmp_path, data, 2)
    out = query_grid(evidence, tmp_path / "img", {"crops": tmp_path / "img"},
                     tmp_path / "grid.png", queries=2, neighbours=2, title="test", tile=40,
                     border=4)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    blue = np.all(sheet[:, 110 + 1] == BLUE, axis=1)
    starts = np.flatnonzero(blue & ~np.roll(blue, 1))
    # One block: two query rows, one under the other (the left borders form one blue run);
    # every neighbour has another label: red.
    assert len(starts) == 1 and blue.sum() == 2 * 40
    assert tuple(sheet[starts[0] + 1, 110 + 40 + 1]) == RED
    assert "no query has a relevant reference" in capsys.readouterr().err


def _many_rows():
    """Five settings x eight safeguards (the anonymisation table's 40 rows)."""
    safeguards = ["none", "excluded"] + [f"anon_{policy}_{variant}" for variant in
                                         ("mosaic_24", "blur_12", "noise_0.5")
                                         for policy in ("detected", "gt")]
    out = []
    for i, setting in enumerate(("ms", "confusion", "center", "ms_tv", "confusion_tv")):
        for j, exclusion in enumerate(safeguards):
            for evaluation, value in (("nonperson", 0.7 + i / 50), ("person", 0.6 - j / 20),
                                      ("market1501", 0.4 - j / 30)):
                out.append({"setting": setting, "exclusion": exclusion, "evaluation": evaluation,
                            "retrieval": {"mean_average_precision_at_r": value}})
    return out


def test_privacy_utility_legend_does_not_squeeze_the_panels(tmp_path):
    # Grouped keys above and below: 40 rows widen the figure no more than 4 rows do.
    few = Image.open(privacy_utility_plot(_records(), tmp_path / "few.png", "nonperson",
                                          ["person", "market1501"]))
    many = Image.open(privacy_utility_plot(_many_rows(), tmp_path / "many.png", "nonperson",
                                           ["person", "market1501"]))
    assert many.width <= few.width * 1.15
    # Two legends of at most 5 + 8 entries, not 40: the figure stays short.
    assert many.height < 2.2 * few.height


def test_tuning_trials_figure_marks_the_chosen_trial(tmp_path):
    from overlearning.evaluate.figures import tuning_trials_figure

    trials = [{"number": str(i), "state": "COMPLETE", "nonperson_map_at_r": str(0.5 + i / 20),
               "person_map_at_r": str(0.7 - i / 30)} for i in range(4)]
    trials.append({"number": "4", "state": "FAIL", "nonperson_map_at_r": "",
                   "person_map_at_r": ""})
    out = tuning_trials_figure(trials, 2, tmp_path / "trials.png", "confusion")
    rgb = np.asarray(Image.open(out).convert("RGB")).astype(int)
    gold = (rgb[..., 0] > 230) & (rgb[..., 1] > 190) & (rgb[..., 2] < 60)
    assert gold.sum() > 30  # the star of the chosen trial
    with pytest.raises(WorkflowInputError, match="no finished tuning trial"):
        tuning_trials_figure(trials[-1:], None, tmp_path / "none.png", "confusion")
    assert not (tmp_path / "none.png").exists()


def test_attnlrp_figure_has_a_colour_bar(tmp_path):
    from overlearning.evaluate.explain import heatmap_figure

    # Zero relevance paints the heat panels white: pure red and pure blue can then only
    # come from the colour bar, red at its top (+1) and blue at its bottom (-1).
    rng = np.random.default_rng(0)
    query = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
    out = heatmap_figure(query, np.zeros((16, 8)), query, tmp_path / "heat.png", "test")
    rgb = np.asarray(Image.open(out).convert("RGB")).astype(int)
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)
    blue = (rgb[..., 2] > 200) & (rgb[..., 0] < 60) & (rgb[..., 1] < 60)
    assert red.sum() > 20 and blue.sum() > 20
    red_rows, blue_rows = np.flatnonzero(red.any(axis=1)), np.flatnonzero(blue.any(axis=1))
    assert red_rows.mean() < blue_rows.mean()
    columns = set(np.flatnonzero(red.any(axis=0))) & set(np.flatnonzero(blue.any(axis=0)))
    assert columns, "red and blue should share the colour bar's columns"


def test_leak_strips_show_queries_that_still_find_their_person(tmp_path):
    # Identities 0-3 with three gallery images each (cameras 0, 1, 2); probes of identity
    # 0 and 1 sit on their own gallery images, probes of 2 and 3 far from everything.
    rng = np.random.default_rng(4)
    centres = np.eye(8, dtype=np.float32)[:4] * 3
    g = np.repeat(centres, 3, axis=0) + 0.1 * rng.normal(size=(12, 8)).astype(np.float32)
    g_labels = np.repeat(np.arange(4), 3)
    gallery = EmbeddingSet(g, g_labels, np.array([f"g{i:02d}.png" for i in range(12)]),
                           np.ones(12, bool), np.tile(np.arange(3), 4))
    q = np.stack([centres[0], centres[1], -centres[2] + 3 * np.eye(8)[6],
                  -centres[3] + 3 * np.eye(8)[7]]).astype(np.float32)
    probes = EmbeddingSet(q, np.arange(4), np.array([f"q{i}.png" for i in range(4)]),
                          np.ones(4, bool), np.full(4, 5))
    (tmp_path / "img").mkdir()
    for name in [*gallery.files, *probes.files]:
        Image.new("RGB", (20, 40), (120, 60, 30)).save(tmp_path / "img" / name)
    evidence = _stored_evidence(tmp_path, gallery, 5, ("plain", "alpha_qe"), reid=True,
                                query=probes)
    assert list(evidence["attacker"].unique()) == ["plain", "alpha_qe"]
    out = leak_strips(evidence, tmp_path / "img", {"crops": tmp_path / "img"},
                      tmp_path / "leaks.png", queries=3, title="leaks", tile=40)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    # Two attackers x two blocks; each rank-1 block draws the two leaking probes (blue query
    # borders, a score caption under each row, then green first matches); the far probes
    # find their person last, so the rank 2-5 blocks are empty.
    blue = np.all(sheet[:, 110 + 1] == BLUE, axis=1)
    starts = np.flatnonzero(blue & ~np.roll(blue, 1))
    assert len(starts) == 4 and blue.sum() == 4 * 40, "two leaking queries per attacker"
    assert tuple(sheet[starts[0] + 1, 110 + 40 + 1]) == GREEN
    # The key names the same-camera colour.
    assert np.all(sheet[:starts[0]] == ORANGE, axis=2).sum() >= 100

"""Figures are written as real PNGs with the content they promise."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from PIL import Image

from overlearning.core.errors import WorkflowInputError
from overlearning.evaluate.embeddings import EmbeddingSet
from overlearning.evaluate.figures import (
    GREEN,
    RED,
    embedding_map,
    privacy_utility_plot,
    query_grid,
    roc_figure,
)
from overlearning.evaluate.retrieval_inputs import RetrievalInputs


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


@pytest.mark.skipif(importlib.util.find_spec("umap") is not None, reason="umap-learn installed")
def test_embedding_map_umap_without_package_is_a_clear_error(tmp_path):
    with pytest.raises(WorkflowInputError, match="umap-learn"):
        embedding_map([("ms", _random_set(50, 0))], tmp_path / "map.png", "umap", 1, 50)


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
    inputs = RetrievalInputs(data, data, np.ones(6, bool), np.arange(6), np.zeros(6, int))
    out = query_grid(inputs, tmp_path / "img", [tmp_path / "img"], tmp_path / "grid.png",
                     queries=2, neighbours=3, title="test", tile=40, border=4)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    label_w, header_h, tile = 110, 28, 40
    # Best block, first row: query 2 or 3 (AP 1), first neighbour its twin: green border.
    assert tuple(sheet[header_h + 1, label_w + tile + 1]) == GREEN
    # Worst block, first row: its first neighbour has another label: red border.
    worst_y = 2 * header_h + 2 * tile
    assert tuple(sheet[worst_y + 1, label_w + tile + 1]) == RED
    assert sheet.shape[1] == label_w + 4 * tile

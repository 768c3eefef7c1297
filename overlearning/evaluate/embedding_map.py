"""The embedding map figure: a 2-D projection (t-SNE or UMAP) of each model's test
embeddings, persons highlighted. It projects embeddings (minutes at paper scale), so its
rule runs as a cluster job, not beside Snakemake."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from overlearning.core.errors import WorkflowInputError
from overlearning.core.names import setting_title
from overlearning.evaluate.embeddings import EmbeddingSet
from overlearning.evaluate.figures import plt, save_figure
from overlearning.evaluate.ranking import l2_normalise


def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        # verbose=2: a line every 50 iterations in the rule's log (minutes at paper scale).
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    metric="cosine", verbose=2).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise WorkflowInputError("evaluation.figures.embedding_map",
                                     "umap needs the umap-learn package, which is not "
                                     "installed; use tsne") from None
        return umap.UMAP(n_components=2, metric="cosine", random_state=seed,
                         verbose=True).fit_transform(x)
    raise WorkflowInputError("evaluation.figures.embedding_map", f"unknown method {method!r}")


MIN_MAP_POINTS = 5  # t-SNE's perplexity needs a handful of points


def embedding_map(sets: Sequence[tuple[str, EmbeddingSet]], out: Path | str, method: str,
                  seed: int, max_points: int) -> Path:
    """2-D map of each model's test embeddings, persons highlighted: a model that separates
    persons into tight identity clusters is one that can re-identify them."""
    if not sets:
        raise ValueError("no embedding sets to map")
    cols = min(3, len(sets))
    rows = math.ceil(len(sets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel()[len(sets):]:
        ax.axis("off")
    label = {"tsne": "t-SNE", "umap": "UMAP"}.get(method, method)
    # One model at a time; t-SNE on thousands of points takes minutes each at paper scale.
    for ax, (name, data) in tqdm(list(zip(axes.ravel(), sets, strict=False)),
                                 desc=f"{label} maps", unit="model", file=sys.stderr):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(data), min(max_points, len(data)), replace=False))
        if len(pick) < MIN_MAP_POINTS:
            # Said in the panel and the log, not a failed rule: a tiny test set has no map.
            print(f"{name}: only {len(pick)} embeddings, too few for a {label} map",
                  file=sys.stderr, flush=True)
            ax.set_title(f"{setting_title(name)}\n[{name}]", fontsize=9)
            ax.text(0.5, 0.5, f"only {len(pick)} test crops:\ntoo few for a {label} map",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        print(f"{name}: {label} of {len(pick)} embeddings", file=sys.stderr, flush=True)
        xy = _project(l2_normalise(data.embeddings[pick]), method, seed)
        persons = data.persons[pick]
        ax.scatter(xy[~persons, 0], xy[~persons, 1], s=4, c="#9a9a9a",
                   label=f"other objects ({int((~persons).sum())})")
        ax.scatter(xy[persons, 0], xy[persons, 1], s=6, c="#d62728",
                   label=f"person crops ({int(persons.sum())})")
        ax.set_title(f"{setting_title(name)}\n[{name}], {len(pick)} test crops", fontsize=9)
        ax.set_xlabel(f"{label} dimension 1 (no units)", fontsize=8)
        ax.set_ylabel(f"{label} dimension 2", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="best", markerscale=2)
    fig.suptitle(f"YouTube-VIS test embeddings per training setting ({label} of cosine "
                 "distances): tight red clusters mean persons can be told apart", fontsize=9)
    return save_figure(fig, out)

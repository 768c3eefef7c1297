"""The study's figures: query grids, the privacy-utility plot, an embedding map, ROC curves.

All figures are drawn from cached embeddings and metrics files (no model runs here) and
written atomically as PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (cluster nodes have none)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from overlearning.core.errors import WorkflowInputError  # noqa: E402
from overlearning.core.image_io import read_rgb  # noqa: E402
from overlearning.evaluate.embeddings import EmbeddingSet  # noqa: E402
from overlearning.evaluate.metrics import evaluate_retrieval  # noqa: E402
from overlearning.evaluate.ranking import MISSING, l2_normalise  # noqa: E402
from overlearning.evaluate.retrieval_inputs import RetrievalInputs  # noqa: E402

GREEN, RED, BLUE, GREY = (0, 170, 0), (220, 0, 0), (30, 90, 220), (90, 90, 90)
METRIC = "mean_average_precision_at_r"


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def save_figure(fig: plt.Figure, out: Path | str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(out)
    try:
        # No "Software" entry: the same data give the same bytes across matplotlib builds.
        fig.savefig(tmp, dpi=120, bbox_inches="tight", metadata={"Software": None})
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def _save_image(image: Image.Image, out: Path | str) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(out)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _row_name(record: Mapping[str, Any]) -> str:
    return f"{record['setting']} / {record['exclusion']}"


def _metric(record: Mapping[str, Any] | None) -> float | None:
    if record is None:
        return None
    value = record.get("retrieval", {}).get(METRIC)
    return None if value is None else float(value)


# ----------------------------------------------------------------------------- query grids

def _tile(path: Path, size: int, border: int, colour: tuple[int, int, int]) -> Image.Image:
    tile = Image.new("RGB", (size, size), colour)
    inner = size - 2 * border
    picture = Image.fromarray(read_rgb(path))
    picture.thumbnail((inner, inner))
    canvas = Image.new("RGB", (inner, inner), (0, 0, 0))
    canvas.paste(picture, ((inner - picture.width) // 2, (inner - picture.height) // 2))
    tile.paste(canvas, (border, border))
    return tile


def query_grid(inputs: RetrievalInputs, query_root: Path | str,
               reference_roots: Sequence[Path | str], out: Path | str, queries: int,
               neighbours: int, title: str, tile: int = 88, border: int = 4) -> Path:
    """Best and worst queries (by AP@R, study reading) with their first neighbours.

    Each row: the query (blue border), then its nearest indexed references: green border
    for the same label (a correct match), red for a different one.
    """
    if len(reference_roots) != int(inputs.part_of.max(initial=-1)) + 1:
        raise ValueError("one image root per reference part is needed")
    result = evaluate_retrieval(inputs)
    ap = result.study.average_precision_at_r
    scored = np.flatnonzero(~np.isnan(ap))
    if len(scored) == 0:
        raise WorkflowInputError(title, "no query has a relevant reference; nothing to show")
    # Ties keep query order (stable sort), so the same data always pick the same rows.
    best = scored[np.argsort(-ap[scored], kind="stable")][:queries]
    worst = scored[np.argsort(ap[scored], kind="stable")][:queries]
    ranking = result.ranking[:, :neighbours]
    if ranking.shape[1] < neighbours:
        pad = np.full((len(ranking), neighbours - ranking.shape[1]), MISSING)
        ranking = np.hstack([ranking, pad])
    refs, q = inputs.references, inputs.queries
    roots = [Path(r) for r in reference_roots]

    label_w, header_h = 110, 28
    width = label_w + (neighbours + 1) * tile
    height = 2 * header_h + (len(best) + len(worst)) * tile
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for name, rows in (("best", best), ("worst", worst)):
        draw.text((4, y + 8), f"{title}: {name} {len(rows)} queries by AP@R", fill=(0, 0, 0))
        y += header_h
        for qi in rows:
            draw.text((4, y + tile // 2 - 6), f"AP@R {ap[qi]:.2f}", fill=(0, 0, 0))
            sheet.paste(_tile(Path(query_root) / q.files[qi], tile, border, BLUE), (label_w, y))
            for j, ri in enumerate(ranking[qi]):
                x = label_w + (j + 1) * tile
                if ri == MISSING:
                    sheet.paste(Image.new("RGB", (tile, tile), GREY), (x, y))
                    continue
                colour = GREEN if refs.labels[ri] == q.labels[qi] else RED
                path = roots[inputs.part_of[ri]] / refs.files[ri]
                sheet.paste(_tile(path, tile, border, colour), (x, y))
            y += tile
    return _save_image(sheet, out)


# ------------------------------------------------------------------- privacy-utility plot

MARKERS = "os^vDP*Xph<>"


def privacy_utility_plot(records: Sequence[Mapping[str, Any]], out: Path | str,
                         nonperson: str, person_evaluations: Sequence[str]) -> Path:
    """Person MAP@R (privacy risk, lower is better) against non-person MAP@R (utility) per
    table row, one panel per person evaluation."""
    index = {(r["setting"], r["exclusion"], r["evaluation"]): r for r in records}
    rows = list(dict.fromkeys((r["setting"], r["exclusion"]) for r in records))
    settings = list(dict.fromkeys(s for s, _ in rows))
    colours = {s: plt.cm.tab10(i % 10) for i, s in enumerate(settings)}
    # One marker per safeguard row (none, excluded, each anonymisation variant), so the
    # safeguards stay apart when several share a colour.
    safeguards = list(dict.fromkeys(e for _, e in rows))
    markers = {e: MARKERS[i % len(MARKERS)] for i, e in enumerate(safeguards)}
    panels = [e for e in person_evaluations if any(k[2] == e for k in index)]
    if not panels:
        raise WorkflowInputError(", ".join(person_evaluations), "no metrics for these evaluations")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 2, 4.2),
                             squeeze=False, layout="constrained")
    for ax, evaluation in zip(axes[0], panels, strict=True):
        for setting, exclusion in rows:
            x = _metric(index.get((setting, exclusion, nonperson)))
            y = _metric(index.get((setting, exclusion, evaluation)))
            if x is None or y is None:
                continue
            ax.scatter(100 * x, 100 * y, color=colours[setting], s=60, alpha=0.85,
                       marker=markers[exclusion], edgecolor="black", zorder=3,
                       label=f"{setting} / {exclusion}")
        ax.set_xlabel(f"non-person MAP@R (%) [{nonperson}]")
        ax.set_ylabel(f"person MAP@R (%) [{evaluation}]")
        ax.set_title(evaluation, fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=7,
               title="setting / exclusion", title_fontsize=7)
    fig.suptitle("Privacy vs utility: better is right (retrieval kept) and down "
                 "(persons not re-identified)", fontsize=9)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------- ROC curves

def roc_figure(records: Sequence[Mapping[str, Any]], out: Path | str,
               evaluations: Sequence[str]) -> Path:
    """Same/different-identity pair ROC per person set, one curve per table row; the exact
    AUC and fast-reid's TPR at FPR 1e-4 / 1e-3 / 1e-2 (dots on the curve) in the legend."""
    panels = [e for e in evaluations if any(r["evaluation"] == e and "roc" in r for r in records)]
    if not panels:
        raise WorkflowInputError(", ".join(evaluations), "no ROC data in the given metrics files")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, evaluation in zip(axes[0], panels, strict=True):
        for record in records:
            roc = record.get("roc")
            if record["evaluation"] != evaluation or not roc or not roc["fpr"]:
                continue
            fpr, tpr = np.asarray(roc["fpr"]), np.asarray(roc["tpr"])
            style = "--" if record["exclusion"] != "none" else "-"
            label = _row_name(record)
            if roc.get("auc") is not None:
                label += f" (AUC {roc['auc']:.3f}"
                if roc.get("tpr_at_fpr_1e-03") is not None:
                    label += f", TPR@1e-3 {roc['tpr_at_fpr_1e-03']:.3f}"
                label += ")"
            (line,) = ax.plot(np.maximum(fpr, 1e-5), tpr, style, lw=1.2, label=label)
            points = [(float(key.rsplit("_", 1)[1]), value) for key, value in roc.items()
                      if key.startswith("tpr_at_fpr_") and value is not None]
            if points:
                ax.plot(*zip(*points, strict=True), "o", ms=3, color=line.get_color())
        ax.plot([1e-5, 1], [1e-5, 1], ":", color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(1e-5, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate (different persons called same)")
        ax.set_ylabel("true positive rate")
        ax.set_title(evaluation, fontsize=9)
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(alpha=0.3)
    return save_figure(fig, out)


# ------------------------------------------------------------------------- embedding map

def _project(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    metric="cosine").fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise WorkflowInputError("evaluation.figures.embedding_map",
                                     "umap needs the umap-learn package, which is not "
                                     "installed; use tsne") from None
        return umap.UMAP(n_components=2, metric="cosine", random_state=seed).fit_transform(x)
    raise WorkflowInputError("evaluation.figures.embedding_map", f"unknown method {method!r}")


def embedding_map(sets: Sequence[tuple[str, EmbeddingSet]], out: Path | str, method: str,
                  seed: int, max_points: int) -> Path:
    """2-D map of each model's test embeddings, persons highlighted: a model that separates
    persons into tight identity clusters is one that can re-identify them."""
    if not sets:
        raise ValueError("no embedding sets to map")
    cols = min(3, len(sets))
    rows = math.ceil(len(sets) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax in axes.ravel()[len(sets):]:
        ax.axis("off")
    for ax, (name, data) in zip(axes.ravel(), sets, strict=False):
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(data), min(max_points, len(data)), replace=False))
        if len(pick) < 5:
            raise WorkflowInputError(name, f"only {len(pick)} embeddings; too few for a map")
        xy = _project(l2_normalise(data.embeddings[pick]), method, seed)
        persons = data.persons[pick]
        ax.scatter(xy[~persons, 0], xy[~persons, 1], s=4, c="#9a9a9a", label="other objects")
        ax.scatter(xy[persons, 0], xy[persons, 1], s=6, c="#d62728", label="persons")
        ax.set_title(f"{name} ({method}, {len(pick)} crops)", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, loc="best", markerscale=2)
    return save_figure(fig, out)

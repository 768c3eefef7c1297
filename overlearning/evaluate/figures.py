"""The study's figures: query grids, the privacy-utility plot, an embedding map, ROC curves.

All figures are drawn from cached embeddings and metrics files (no model runs here) and
written atomically as PNG.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (cluster nodes have none)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from tqdm import tqdm  # noqa: E402

from overlearning.core.atomic import writing  # noqa: E402
from overlearning.core.errors import WorkflowInputError  # noqa: E402
from overlearning.core.names import evaluation_title, safeguard_title, setting_title  # noqa: E402
from overlearning.core.packs import ImageSource, open_images  # noqa: E402
from overlearning.evaluate.embeddings import EmbeddingSet  # noqa: E402
from overlearning.evaluate.metrics import evaluate_retrieval  # noqa: E402
from overlearning.evaluate.ranking import MISSING, knn_with_exclusion, l2_normalise  # noqa: E402
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
        with writing(out):
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

# What each border colour means, drawn as the grid's key.
BORDER_KEY = ((BLUE, "query"), (GREEN, "correct match (same object / identity)"),
              (RED, "wrong match (another object / identity)"),
              (GREY, "no further indexed item"))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _tile(images: ImageSource, name: str, size: int, border: int,
          colour: tuple[int, int, int]) -> Image.Image:
    """One image of a set's pack (or folder), framed in ``colour``."""
    tile = Image.new("RGB", (size, size), colour)
    inner = size - 2 * border
    picture = Image.fromarray(images.read_rgb(name))
    picture.thumbnail((inner, inner))
    canvas = Image.new("RGB", (inner, inner), (0, 0, 0))
    canvas.paste(picture, ((inner - picture.width) // 2, (inner - picture.height) // 2))
    tile.paste(canvas, (border, border))
    return tile


def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled scalable font: the same glyphs on every machine, no system fonts.
    return ImageFont.load_default(size=size)


def query_grid(inputs: RetrievalInputs, query_root: Path | str,
               reference_roots: Sequence[Path | str], out: Path | str, queries: int,
               neighbours: int, title: str, tile: int = 88, border: int = 4) -> Path:
    """Best and worst queries (by AP@R, study reading) with their first neighbours.

    Each row: the query (blue border), then its nearest indexed references: green border
    for the same label (a correct match), red for a different one. A key of the colours
    and a header naming each column sit above the rows. Where no query has a relevant
    reference (AP@R undefined for all: a tiny or fully excluded index), the first queries
    are drawn in one block that says so, rather than failing the figure.
    """
    if len(reference_roots) != int(inputs.part_of.max(initial=-1)) + 1:
        raise ValueError("one image root per reference part is needed")
    result = evaluate_retrieval(inputs)
    ap = result.study.average_precision_at_r
    scored = np.flatnonzero(~np.isnan(ap))
    if len(scored) == 0:
        print(f"{title}: no query has a relevant reference; drawing the first {queries} "
              "queries without AP@R", file=sys.stderr)
        first = np.arange(len(ap))[:queries]
        blocks = ((f"first {len(first)} queries: none has a relevant reference", first),)
    else:
        # Ties keep query order (stable sort), so the same data always pick the same rows.
        best = scored[np.argsort(-ap[scored], kind="stable")][:queries]
        worst = scored[np.argsort(ap[scored], kind="stable")][:queries]
        blocks = ((f"best {len(best)} queries by AP@R", best),
                  (f"worst {len(worst)} queries by AP@R", worst))
    refs, q = inputs.references, inputs.queries
    # The shown rows' own nearest neighbours: the metric's ranking stops at the largest R,
    # which can be fewer than the columns (or none at all).
    shown = np.unique(np.concatenate([rows for _, rows in blocks]))
    nearest = knn_with_exclusion(l2_normalise(q.embeddings[shown]), l2_normalise(refs.embeddings),
                                 neighbours, inputs.kept, inputs.self_index[shown])
    ranking = dict(zip(shown.tolist(), nearest, strict=True))
    roots = [open_images(r) for r in reference_roots]
    query_images = open_images(query_root)

    label_w, header_h, title_h, key_h, columns_h = 110, 26, 28, 22, 22
    big, small = _font(14), _font(11)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(label_w + (neighbours + 1) * tile, 620,
                8 + int(measure.textlength(title, font=big)))
    # The key: one swatch per border colour, wrapped onto as many lines as the width needs.
    key_lines: list[list[tuple[tuple[int, int, int], str, int]]] = [[]]
    x = 4
    for colour, meaning in BORDER_KEY:
        step = 26 + int(measure.textlength(meaning, font=small))
        if key_lines[-1] and x + step > width:
            key_lines.append([])
            x = 4
        key_lines[-1].append((colour, meaning, x))
        x += step
    rows_total = sum(len(rows) for _, rows in blocks)
    height = title_h + key_h * len(key_lines) + columns_h + len(blocks) * header_h + rows_total * tile
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 6), title, fill=(0, 0, 0), font=big)
    y = title_h
    for line in key_lines:
        for colour, meaning, x in line:
            draw.rectangle([x, y + 4, x + 14, y + 18], fill=colour)
            draw.text((x + 18, y + 5), meaning, fill=(0, 0, 0), font=small)
        y += key_h
    draw.text((4, y + 5), "AP@R of the query", fill=(0, 0, 0), font=small)
    names = ["query"] + [f"{_ordinal(j + 1)} nearest" for j in range(neighbours)]
    for j, name in enumerate(names):
        left = label_w + j * tile
        draw.text((left + (tile - draw.textlength(name, font=small)) / 2, y + 5), name,
                  fill=(0, 0, 0), font=small)
    y += columns_h
    with tqdm(total=rows_total, desc="query grid rows", unit="query", file=sys.stderr) as bar:
        for header, rows in blocks:
            draw.text((4, y + 7), header, fill=(0, 0, 0), font=big)
            y += header_h
            for qi in rows:
                score = "AP@R n/a" if np.isnan(ap[qi]) else f"AP@R {ap[qi]:.2f}"
                draw.text((4, y + tile // 2 - 7), score, fill=(0, 0, 0), font=small)
                sheet.paste(_tile(query_images, str(q.files[qi]), tile, border, BLUE),
                            (label_w, y))
                for j, ri in enumerate(ranking[qi]):
                    x = label_w + (j + 1) * tile
                    if ri == MISSING:
                        sheet.paste(Image.new("RGB", (tile, tile), GREY), (x, y))
                        continue
                    colour = GREEN if refs.labels[ri] == q.labels[qi] else RED
                    images = roots[inputs.part_of[ri]]
                    sheet.paste(_tile(images, str(refs.files[ri]), tile, border, colour), (x, y))
                y += tile
                bar.update()
    return _save_image(sheet, out)


# ------------------------------------------------------------------- privacy-utility plot

MARKERS = "os^vDP*Xph<>"


def privacy_utility_plot(records: Sequence[Mapping[str, Any]], out: Path | str,
                         nonperson: str, person_evaluations: Sequence[str]) -> Path:
    """Person MAP@R (privacy risk, lower is better) against non-person MAP@R (utility) per
    table row, one panel per person evaluation.

    Colour is the training setting and marker shape the test-time safeguard, each with its
    own legend below the panels: with anonymisation variants there are dozens of rows, and
    one legend entry per row would squeeze the panels.
    """
    index = {(r["setting"], r["exclusion"], r["evaluation"]): r for r in records}
    rows = list(dict.fromkeys((r["setting"], r["exclusion"]) for r in records))
    settings = list(dict.fromkeys(s for s, _ in rows))
    colours = {s: plt.cm.tab10(i % 10) for i, s in enumerate(settings)}
    # One marker per safeguard row (none, excluded, each anonymisation variant), so the
    # safeguards stay apart when several share a colour; oracle (all persons) rows hollow.
    safeguards = list(dict.fromkeys(e for _, e in rows))
    markers = {e: MARKERS[i % len(MARKERS)] for i, e in enumerate(safeguards)}
    hollow = {e: e.startswith("anon_gt_") for e in safeguards}
    panels = [e for e in person_evaluations if any(k[2] == e for k in index)]
    if not panels:
        raise WorkflowInputError(", ".join(person_evaluations), "no metrics for these evaluations")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.6, 4.6),
                             squeeze=False, layout="constrained")
    for ax, evaluation in tqdm(list(zip(axes[0], panels, strict=True)), desc="panels",
                               unit="panel", file=sys.stderr):
        for setting, exclusion in rows:
            x = _metric(index.get((setting, exclusion, nonperson)))
            y = _metric(index.get((setting, exclusion, evaluation)))
            if x is None or y is None:
                continue
            face = "none" if hollow[exclusion] else colours[setting]
            ax.scatter(100 * x, 100 * y, s=60, alpha=0.85, marker=markers[exclusion],
                       facecolor=face, edgecolor=colours[setting] if hollow[exclusion] else "black",
                       linewidths=1.5 if hollow[exclusion] else 0.8, zorder=3)
        ax.set_xlabel(f"{evaluation_title(nonperson)}\nMAP@R (%), right is better", fontsize=8)
        ax.set_ylabel("person MAP@R (%), down is better", fontsize=8)
        ax.set_title(evaluation_title(evaluation), fontsize=9)
        ax.grid(alpha=0.3)
    setting_handles = [Line2D([], [], linestyle="", marker="o", markersize=8,
                              markerfacecolor=colours[s], markeredgecolor="black",
                              label=setting_title(s)) for s in settings]
    safeguard_handles = [Line2D([], [], linestyle="", marker=markers[e], markersize=8,
                                markerfacecolor="none" if hollow[e] else "#777777",
                                markeredgecolor="black", label=safeguard_title(e))
                         for e in safeguards]
    # Both keys outside the panels, one above and one below, several entries per line.
    fig.legend(handles=setting_handles, loc="outside upper center", fontsize=7,
               title="colour: training setting", title_fontsize=8,
               ncol=min(3, len(setting_handles)))
    fig.legend(handles=safeguard_handles, loc="outside lower center", fontsize=7,
               title="marker: test-time safeguard (hollow: every person anonymised, oracle)",
               title_fontsize=8, ncol=min(3, len(safeguard_handles)))
    # No suptitle: the upper key takes its place; the axis labels say which way is better.
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


# ------------------------------------------------------------------------- tuning trials

def tuning_trials_figure(trials: Sequence[Mapping[str, Any]], best: int | None,
                         out: Path | str, setting: str) -> Path:
    """Validation person MAP@R against non-person MAP@R per Optuna trial; the trial chosen
    for training starred, the Pareto front (no trial better on both) joined by a line."""
    done = [t for t in trials if t.get("nonperson_map_at_r") not in (None, "")
            and t.get("person_map_at_r") not in (None, "")]
    if not done:
        raise WorkflowInputError(setting, "no finished tuning trial to plot")
    x = np.array([100 * float(t["nonperson_map_at_r"]) for t in done])
    y = np.array([100 * float(t["person_map_at_r"]) for t in done])
    numbers = [int(t["number"]) for t in done]
    # Pareto front of (x up, y down): sort by x descending, keep points that lower y.
    front, lowest = [], math.inf
    for i in sorted(range(len(done)), key=lambda i: (-x[i], y[i])):
        if y[i] < lowest:
            front.append(i)
            lowest = y[i]
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    ax.scatter(x, y, s=36, c="#1f77b4", edgecolor="black", zorder=3, label="trial")
    order = sorted(front, key=lambda i: x[i])
    ax.plot(x[order], y[order], "-", color="#ff7f0e", lw=1.2, zorder=2,
            label="Pareto front (no trial better on both)")
    for xi, yi, n in zip(x, y, numbers, strict=True):
        ax.annotate(str(n), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if best is not None and best in numbers:
        i = numbers.index(best)
        ax.scatter([x[i]], [y[i]], s=220, marker="*", c="gold", edgecolor="black", zorder=4,
                   label=f"chosen trial {best}")
    ax.set_xlabel("non-person MAP@R on validation (%): utility, right is better", fontsize=8)
    ax.set_ylabel("person-query MAP@R on validation (%): risk, down is better", fontsize=8)
    ax.set_title(f"Tuning trials: {setting_title(setting)} [{setting}]", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out)

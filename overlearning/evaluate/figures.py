"""The study's figures: query grids, leak strips, the privacy-utility plot, ROC curves,
tuning trials.

All are drawn from what the metrics jobs stored (metrics files, per-query evidence): no
model runs and no search happens here, so the rules drawing them can run on a login node.
Written atomically as PNG. (The embedding map, which projects embeddings, is
overlearning.evaluate.embedding_map.)
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display (cluster nodes have none)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from tqdm import tqdm  # noqa: E402

from overlearning.core.atomic import writing  # noqa: E402
from overlearning.core.errors import WorkflowInputError  # noqa: E402
from overlearning.core.names import (  # noqa: E402
    attacker_title,
    evaluation_title,
    safeguard_title,
    setting_title,
)
from overlearning.core.packs import ImageSource, check_image, open_images  # noqa: E402
from overlearning.evaluate.evidence import COLUMNS as EVIDENCE_COLUMNS  # noqa: E402
from overlearning.evaluate.evidence import read_evidence  # noqa: E402

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


# ------------------------------------------------------------- query grids and leak strips
#
# Both are drawn from the per-query evidence the metrics jobs stored
# (overlearning.evaluate.evidence): nothing here searches, ranks or scores.

# What each border colour means, drawn as the key above the rows.
BORDER_KEY = ((BLUE, "query"), (GREEN, "correct match (same object / identity)"),
              (RED, "wrong match (another object / identity)"),
              (GREY, "no further indexed item"))
ORANGE = (240, 140, 0)
LEAK_KEY = (*BORDER_KEY[:3], (ORANGE, "same identity, same camera (the re-ID protocol ignores it)"),
            BORDER_KEY[3])


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@functools.lru_cache(maxsize=32)
def _image_set(root: str) -> ImageSource:
    # A figure reads many images of few sets: each pack's member table is read once.
    return open_images(root)


def open_image(root: Path | str, name: str, source: str) -> Image.Image:
    """The one place figures read a stored image: ``name`` inside the image set (a pack, a
    folder, or downloads read in place) at ``root``."""
    images = _image_set(str(root))
    return Image.fromarray(images.read_rgb(check_image(images, name, source, "image name")))


def _tile(picture: Image.Image, size: int, border: int, colour: tuple[int, int, int]) -> Image.Image:
    tile = Image.new("RGB", (size, size), colour)
    inner = size - 2 * border
    picture = picture.copy()
    picture.thumbnail((inner, inner))
    canvas = Image.new("RGB", (inner, inner), (0, 0, 0))
    canvas.paste(picture, ((inner - picture.width) // 2, (inner - picture.height) // 2))
    tile.paste(canvas, (border, border))
    return tile


def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled scalable font: the same glyphs on every machine, no system fonts.
    return ImageFont.load_default(size=size)


@dataclass(frozen=True)
class StripRow:
    """One drawn query: a label, its image, and its references (image or None for an
    empty slot, border colour, caption under the tile)."""
    label: str
    query: Image.Image
    references: list[tuple[Image.Image | None, tuple[int, int, int], str]]


def draw_strips(blocks: Sequence[tuple[str, Sequence[StripRow]]], title: str, columns: int,
                key: Sequence[tuple[tuple[int, int, int], str]], out: Path | str,
                row_label: str, tile: int = 88, border: int = 4, captions: bool = False) -> Path:
    """A sheet of blocks of query rows: the query tile (blue), then ``columns`` reference
    tiles; a key of the border colours and a header naming each column above the rows."""
    label_w, header_h, title_h, key_h, columns_h = 110, 26, 28, 22, 22
    caption_h = 14 if captions else 0
    big, small = _font(14), _font(11)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(label_w + (columns + 1) * tile, 620,
                8 + int(max(measure.textlength(text, font=big)
                            for text in [title, *(header for header, _ in blocks)])))
    key_lines: list[list[tuple[tuple[int, int, int], str, int]]] = [[]]
    x = 4
    for colour, meaning in key:
        step = 26 + int(measure.textlength(meaning, font=small))
        if key_lines[-1] and x + step > width:
            key_lines.append([])
            x = 4
        key_lines[-1].append((colour, meaning, x))
        x += step
    rows_total = sum(len(rows) for _, rows in blocks)
    row_h = tile + caption_h
    height = (title_h + key_h * len(key_lines) + columns_h + len(blocks) * header_h
              + rows_total * row_h)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 6), title, fill=(0, 0, 0), font=big)
    y = title_h
    for line in key_lines:
        for colour, meaning, x in line:
            draw.rectangle([x, y + 4, x + 14, y + 18], fill=colour)
            draw.text((x + 18, y + 5), meaning, fill=(0, 0, 0), font=small)
        y += key_h
    draw.text((4, y + 5), row_label, fill=(0, 0, 0), font=small)
    names = ["query"] + [f"{_ordinal(j + 1)} nearest" for j in range(columns)]
    for j, name in enumerate(names):
        left = label_w + j * tile
        draw.text((left + (tile - draw.textlength(name, font=small)) / 2, y + 5), name,
                  fill=(0, 0, 0), font=small)
    y += columns_h
    for header, rows in blocks:
        draw.text((4, y + 7), header, fill=(0, 0, 0), font=big)
        y += header_h
        for row in rows:
            for i, line in enumerate(row.label.split("\n")):
                draw.text((4, y + tile // 2 - 7 + 13 * i), line, fill=(0, 0, 0), font=small)
            sheet.paste(_tile(row.query, tile, border, BLUE), (label_w, y))
            for j in range(columns):
                x = label_w + (j + 1) * tile
                picture, colour, caption = (row.references[j] if j < len(row.references)
                                            else (None, GREY, ""))
                if picture is None:
                    sheet.paste(Image.new("RGB", (tile, tile), GREY), (x, y))
                else:
                    sheet.paste(_tile(picture, tile, border, colour), (x, y))
                if captions and caption:
                    draw.text((x + (tile - draw.textlength(caption, font=small)) / 2,
                               y + tile + 1), caption, fill=(0, 0, 0), font=small)
            y += row_h
    return _save_image(sheet, out)


def _query_rows(evidence: pd.DataFrame) -> pd.DataFrame:
    """One row per query of an attacker's evidence (its per-query columns)."""
    return (evidence.drop_duplicates("query").sort_values("query", kind="stable")
            .set_index("query"))


def _reference_tiles(evidence: pd.DataFrame, query: int, columns: int,
                     reference_roots: Mapping[str, Path | str], source: str,
                     same_camera: bool = False, scores: bool = False) -> list:
    rows = evidence[evidence["query"] == query].sort_values("rank", kind="stable")
    tiles = []
    for ref in rows.head(columns).itertuples(index=False):
        if ref.reference_set not in reference_roots:
            raise WorkflowInputError(source, f"no image folder for reference set {ref.reference_set!r}")
        colour = GREEN if ref.correct else RED
        if same_camera and ref.same_camera:
            colour = ORANGE
        caption = f"{ref.score:.3f}" if scores else ""
        tiles.append((open_image(reference_roots[ref.reference_set], ref.reference_file, source),
                      colour, caption))
    return tiles


def read_attacker_evidence(path: Path | str, attacker: str | None = None) -> pd.DataFrame:
    """The stored per-query evidence of one metrics file (one attacker's rows, or all)."""
    if not Path(path).is_file():
        raise WorkflowInputError(path, "per-query evidence not found (was its metrics job run?)")
    table = read_evidence(path)
    missing = [c for c in EVIDENCE_COLUMNS if c not in table.columns]
    if missing:
        raise WorkflowInputError(path, f"per-query evidence lacks column {missing[0]!r}")
    if attacker is not None:
        table = table[table["attacker"] == attacker]
    return table


def query_grid(evidence: pd.DataFrame, query_root: Path | str,
               reference_roots: Mapping[str, Path | str], out: Path | str, queries: int,
               neighbours: int, title: str, tile: int = 88, border: int = 4,
               source: str = "evidence") -> Path:
    """Best and worst queries (by AP@R, study reading) with their first neighbours, from one
    attacker's stored evidence.

    Each row: the query (blue border), then its nearest indexed references: green border
    for the same label (a correct match), red for a different one. A key of the colours
    and a header naming each column sit above the rows. Where no query has a relevant
    reference (AP@R undefined for all: a tiny or fully excluded index), the first queries
    are drawn in one block that says so, rather than failing the figure.
    """
    per_query = _query_rows(evidence)
    stored = int(evidence["rank"].max()) if len(evidence) else 0
    if neighbours > stored and len(evidence) and stored < per_query.shape[0]:
        print(f"{title}: {stored} references per query stored, {neighbours} asked",
              file=sys.stderr)
    ap = per_query["ap_at_r"].to_numpy(dtype=float)
    index = per_query.index.to_numpy()
    scored = np.flatnonzero(~np.isnan(ap))
    if len(scored) == 0:
        print(f"{title}: no query has a relevant reference; drawing the first {queries} "
              "queries without AP@R", file=sys.stderr)
        blocks_idx = ((f"first {min(queries, len(index))} queries: none has a relevant "
                       "reference", np.arange(len(index))[:queries]),)
    else:
        # Ties keep query order (stable sort), so the same data always pick the same rows.
        best = scored[np.argsort(-ap[scored], kind="stable")][:queries]
        worst = scored[np.argsort(ap[scored], kind="stable")][:queries]
        blocks_idx = ((f"best {len(best)} queries by AP@R", best),
                      (f"worst {len(worst)} queries by AP@R", worst))
    blocks = []
    for header, positions in tqdm(blocks_idx, desc="query grid blocks", file=sys.stderr):
        rows = []
        for pos in positions:
            qi = int(index[pos])
            info = per_query.loc[qi]
            label = "AP@R n/a" if np.isnan(ap[pos]) else f"AP@R {ap[pos]:.2f}"
            rows.append(StripRow(label, open_image(query_root, info["query_file"], source),
                                 _reference_tiles(evidence, qi, neighbours, reference_roots,
                                                  source)))
        blocks.append((header, rows))
    return draw_strips(blocks, title, neighbours, BORDER_KEY, out, "AP@R of the query",
                       tile=tile, border=border)


LEAK_RANKS = ((1, 1, "retrieve their person first"), (2, 5, "retrieve their person at rank 2-5"))


def leak_strips(evidence: pd.DataFrame, query_root: Path | str,
                reference_roots: Mapping[str, Path | str], out: Path | str, queries: int,
                title: str, columns: int = 5, tile: int = 80, border: int = 4,
                source: str = "evidence") -> Path:
    """What the safeguards miss: per attacker, the queries that still find their person at
    rank 1, and at ranks 2-5 (the first correct match's rank as the metrics scored it:
    the re-ID protocol's for re-ID evaluations), each drawn as its ranked strip with the
    scores under the tiles. Queries with the highest AP first (ties: query order); each
    block's header counts all such queries."""
    blocks = []
    for attacker in dict.fromkeys(evidence["attacker"]):
        rows = evidence[evidence["attacker"] == attacker]
        per_query = _query_rows(rows)
        total = len(per_query)
        ap = per_query["reid_ap"].where(per_query["reid_ap"].notna(), per_query["ap_at_r"])
        kind = str(rows["score_kind"].iloc[0]).replace("_", " ") if len(rows) else ""
        for low, high, words in LEAK_RANKS:
            first = per_query["first_match_rank"]
            chosen = per_query[(first >= low) & (first <= high)]
            order = np.lexsort((chosen.index.to_numpy(), -ap.loc[chosen.index].fillna(0).to_numpy()))
            picked = chosen.index.to_numpy()[order][:queries]
            strip = [StripRow(f"AP {ap.loc[qi]:.2f}\nfirst match {int(first.loc[qi])}",
                              open_image(query_root, per_query.loc[qi, "query_file"], source),
                              _reference_tiles(rows, int(qi), columns, reference_roots, source,
                                               same_camera=True, scores=True))
                     for qi in picked]
            header = (f"{attacker_title(attacker)}: {len(chosen)} of {total} queries {words}"
                      f" (scores: {kind})")
            blocks.append((header, strip))
    return draw_strips(blocks, title, columns, LEAK_KEY, out, "query AP, first match",
                       tile=tile, border=border, captions=True)


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

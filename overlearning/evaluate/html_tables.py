"""Readable HTML renderings of the study's CSV and JSON tables, for the Snakemake report.

The report shows an HTML result inline but offers a CSV or JSON file only as a download.
Each rendering is one self-contained page (inline style, no script): a title, a caption
that says what to look for, column headers in words with the key underneath, numbers
formatted for reading (fractions as percentages where asked) and shaded by value so the
eye finds the extremes of a column. The CSV stays the exact record; this is its view.
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from overlearning.core.atomic import read_json, write_text
from overlearning.core.errors import WorkflowInputError
from overlearning.core.names import (
    attacker_title,
    column_title,
    evaluation_title,
    safeguard_title,
    setting_title,
)

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 16px; color: #111; }
h1 { font-size: 17px; margin: 0 0 6px 0; }
p.caption { max-width: 70em; color: #333; margin: 0 0 12px 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f0f2f5; vertical-align: bottom; text-align: center; font-weight: 600; }
th small, td small { display: block; font-weight: normal; color: #667; font-size: 10px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.label { text-align: left; white-space: nowrap; }
tr:hover td { outline: 1px solid #88a; }
"""
# Row-label columns: shown as words with the key underneath, never shaded.
LABELS: dict[str, Callable[[str], str]] = {
    "setting": setting_title,
    "exclusion": safeguard_title,
    "safeguard": safeguard_title,
    "attacker": attacker_title,
    "evaluation": evaluation_title,
}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _format(value: float, percent: bool) -> str:
    if percent:
        return f"{100 * value:.1f}"
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"


def _shade(value: float, low: float, high: float) -> str:
    """Background for a cell: the higher within its column, the stronger the blue."""
    if high <= low:
        return ""
    alpha = 0.05 + 0.35 * (value - low) / (high - low)
    return f' style="background: rgba(30, 90, 220, {alpha:.2f})"'


def table_html(header: Sequence[str], rows: Sequence[Sequence[str]], title: str, caption: str,
               percent: bool = False, titles: Callable[[str], str] = column_title,
               shade: bool = True) -> str:
    """One standalone HTML page holding the table; numeric columns shaded by value."""
    numeric = {}
    for j, name in enumerate(header):
        values = [_number(row[j]) for row in rows if j < len(row) and row[j] != ""]
        if name not in LABELS and values and all(v is not None for v in values):
            numeric[j] = (min(values), max(values))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", f"<p class='caption'>{html.escape(caption)}</p>",
             "<table><thead><tr>"]
    for name in header:
        words = titles(name)
        key = f"<small>{html.escape(name)}</small>" if words != name else ""
        parts.append(f"<th title='{html.escape(name)}'>{html.escape(words)}{key}</th>")
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>")
        for j, name in enumerate(header):
            text = row[j] if j < len(row) else ""
            if name in LABELS:
                words = LABELS[name](text)
                key = f"<small>{html.escape(text)}</small>" if words != text else ""
                parts.append(f"<td class='label'>{html.escape(words)}{key}</td>")
            elif j in numeric and text != "":
                value = float(text)
                style = _shade(value, *numeric[j]) if shade else ""
                parts.append(f"<td class='num'{style} title='{html.escape(text)}'>"
                             f"{_format(value, percent)}</td>")
            else:
                parts.append(f"<td>{html.escape(text) if text else '–'}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table></body></html>\n")
    return "".join(parts)


def read_csv_table(path: Path | str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV table; an empty or ragged file stops with its path."""
    path = Path(path)
    if not path.is_file():
        raise WorkflowInputError(path, "table not found")
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    if not lines or not lines[0]:
        raise WorkflowInputError(path, "table is empty (no header row)")
    header, rows = lines[0], lines[1:]
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise WorkflowInputError(path, f"line {i} has {len(row)} cells, the header {len(header)}")
    return header, rows


def render_csv(csv_path: Path | str, out: Path | str, title: str, caption: str,
               percent: bool = False) -> Path:
    """The HTML view of one CSV table (``percent``: fractions shown as percentages)."""
    header, rows = read_csv_table(csv_path)
    write_text(out, table_html(header, rows, title, caption, percent=percent))
    return Path(out)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level: ``{"a": {"b": 1}}`` -> ``{"a / b": 1}``."""
    if not isinstance(obj, Mapping):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.update(flatten(value, f"{prefix} / {key}" if prefix else str(key)))
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def render_json(json_path: Path | str, out: Path | str, title: str, caption: str) -> Path:
    """The HTML view of a JSON record: one row per (flattened) key."""
    if not Path(json_path).is_file():
        raise WorkflowInputError(json_path, "JSON file not found")
    record = read_json(json_path)
    if not isinstance(record, Mapping):
        raise WorkflowInputError(json_path, "expected a JSON object")
    rows = [[key, _cell(value)] for key, value in flatten(record).items()]
    write_text(out, table_html(["entry", "value"], rows, title, caption, titles=str,
                               shade=False))
    return Path(out)


def render_records(records: Sequence[tuple[str, Mapping[str, Any]]], out: Path | str,
                   title: str, caption: str, name_column: str = "set") -> Path:
    """One row per named JSON record (flattened), columns the union of their keys."""
    if not records:
        raise ValueError("no records to render")
    flat = [(name, flatten(record)) for name, record in records]
    columns = list(dict.fromkeys(key for _, record in flat for key in record))
    rows = [[name] + [_cell(record.get(key)) for key in columns] for name, record in flat]
    # Nested keys are titled by their last part (the full key stays underneath).
    write_text(out, table_html([name_column, *columns], rows, title, caption,
                               titles=lambda key: key.rsplit(" / ", 1)[-1]))
    return Path(out)

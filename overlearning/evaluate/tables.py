"""The study's tables, assembled from whatever metrics files they are given.

Rows of the main table are (training setting, exclusion, attacker) and columns evaluations,
in the order in which the metrics files are listed (attackers: plain first, then the
metrics file's ``attackers`` section); the re-ID and details tables are long (one row per
evaluation too, one column per metric); nothing is hard-coded, so extra settings (anonymised
galleries, new probes) become extra rows or columns. Each table is written as CSV (full
precision), Markdown and LaTeX (percentages, two decimals); the two headline numbers of the
study go to ``headline.json``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from overlearning.core.atomic import read_json, write_json, write_text
from overlearning.core.errors import WorkflowInputError

ROW_KEYS = ("setting", "exclusion", "attacker")
# The re-ID and details tables are long: one row per (setting, exclusion, attacker,
# evaluation), one column per metric, so that no table is wider than a screen.
LONG_KEYS = (*ROW_KEYS, "evaluation")
MISSING_CELL = "–"
PLAIN = "plain"


@dataclass(frozen=True)
class Column:
    """One table column: ``section`` of a metrics record and ``metric`` inside it."""
    section: str
    metric: str
    title: str


MAIN_COLUMNS = (Column("retrieval", "mean_average_precision_at_r", "MAP@R"),)
# fast-reid's verification operating points on the exact pair ROC (evaluate/reid_protocol.py).
TPR_COLUMNS = tuple(Column("roc", f"tpr_at_fpr_{fpr}", f"TPR@FPR={fpr}")
                    for fpr in ("1e-04", "1e-03", "1e-02"))
REID_COLUMNS = (Column("reid", "rank1", "R-1"), Column("reid", "mAP", "mAP"),
                Column("reid", "mINP", "mINP"), *TPR_COLUMNS)
DETAIL_COLUMNS = (
    Column("retrieval", "mean_average_precision_at_r", "MAP@R"),
    Column("retrieval", "mean_average_precision", "MAP"),
    Column("retrieval_indexed", "mean_average_precision_at_r", "MAP@R indexed"),
    Column("retrieval_indexed", "mean_average_precision", "MAP indexed"),
    Column("reid", "rank1", "Rank-1"),
    Column("reid", "rank5", "Rank-5"),
    Column("reid", "rank10", "Rank-10"),
    Column("reid", "mAP", "re-ID mAP"),
    Column("reid", "mINP", "mINP"),
    Column("reid_indexed", "rank1", "Rank-1 indexed"),
    Column("reid_indexed", "mAP", "re-ID mAP indexed"),
    Column("reid_indexed", "mINP", "mINP indexed"),
    Column("roc", "auc", "ROC AUC"),
    *TPR_COLUMNS,
)


def load_records(paths: Sequence[Path | str], progress: bool = False) -> list[dict]:
    """Read every metrics file; a missing or incomplete one stops with its path.

    ``progress``: a progress bar in the rule's log (hundreds of files at paper scale).
    """
    records = []
    for path in tqdm(paths, desc="metrics files", unit="file", file=sys.stderr,
                     disable=not progress):
        if not Path(path).is_file():
            raise WorkflowInputError(path, "metrics file not found (was its evaluation run?)")
        record = read_json(path)
        missing = [key for key in ("setting", "exclusion", "evaluation", "retrieval")
                   if key not in record]
        if missing:
            raise WorkflowInputError(path, f"metrics file lacks {', '.join(missing)}")
        records.append(record)
    return records


def by_attacker(records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One record per (metrics file, attacker): the plain search's sections (the file's top
    level) with ``attacker`` = plain, then each attacker's own sections, same labels, in the
    file's ``attacker_order`` (the config's order)."""
    out = []
    for record in records:
        base = {k: v for k, v in record.items() if k not in ("attackers", "attacker_order")}
        out.append({**base, "attacker": PLAIN})
        attackers = record.get("attackers") or {}
        for name in record.get("attacker_order") or sorted(attackers):
            labels = {k: record[k] for k in ("setting", "exclusion", "evaluation")}
            out.append({**labels, **attackers[name], "attacker": name})
    return out


def _ordered_unique(values) -> list:
    seen: dict = {}
    for value in values:
        seen.setdefault(value, None)
    return list(seen)


def _value(record: Mapping[str, Any], column: Column) -> float | None:
    value = record.get(column.section, {}).get(column.metric)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[Any]]  # row key cells, then floats or None
    keys: int = len(ROW_KEYS)  # leading label columns


def assemble(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> Table:
    """Pivot records into one row per (setting, exclusion), columns per (evaluation, metric).

    A column appears for an evaluation only if some record has its section (re-ID columns
    only for re-ID evaluations). Two records for the same cell are an error.
    """
    cells: dict[tuple, dict] = {}
    for record in records:
        key = tuple(record[k] for k in ROW_KEYS)
        row = cells.setdefault(key, {})
        for column in columns:
            if column.section not in record:
                continue
            cell = (record["evaluation"], column)
            if cell in row:
                raise WorkflowInputError(
                    f"{record['evaluation']}/{'/'.join(key)}",
                    "two metrics files for the same setting, exclusion and evaluation")
            row[cell] = _value(record, column)
    evaluations = _ordered_unique(r["evaluation"] for r in records)
    layout = [(e, c) for e in evaluations for c in columns
              if any((e, c) in row for row in cells.values())]
    header = [*ROW_KEYS] + [f"{e} {c.title}" if len(columns) > 1 else e for e, c in layout]
    rows = [[*key] + [row.get(cell) for cell in layout] for key, row in cells.items()
            if any(cell in row for cell in layout)]
    return Table(header, rows)


def assemble_long(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> Table:
    """One row per (setting, exclusion, attacker, evaluation) that has any of ``columns``'
    sections, one column per metric (in ``columns`` order), rows in input order."""
    rows: dict[tuple, list] = {}
    for record in records:
        if not any(c.section in record for c in columns):
            continue
        key = tuple(record[k] for k in LONG_KEYS)
        if key in rows:
            raise WorkflowInputError("/".join(map(str, key)),
                                     "two metrics files for the same setting, exclusion and evaluation")
        rows[key] = [*key] + [_value(record, c) if c.section in record else None for c in columns]
    used = [j for j, c in enumerate(columns) if any(r[len(LONG_KEYS) + j] is not None
                                                    for r in rows.values())]
    header = [*LONG_KEYS] + [columns[j].title for j in used]
    body = [[*r[:len(LONG_KEYS)]] + [r[len(LONG_KEYS) + j] for j in used] for r in rows.values()]
    return Table(header, body, keys=len(LONG_KEYS))


def _percent(value: Any) -> str:
    if value is None:
        return MISSING_CELL
    return f"{100 * float(value):.2f}"


def to_csv(table: Table) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        text = repr(float(v)) if isinstance(v, float) else str(v)
        return f'"{text}"' if any(ch in text for ch in ',"\n') else text
    return "".join(",".join(cell(v) for v in row) + "\n" for row in [table.header, *table.rows])


def to_markdown(table: Table, caption: str) -> str:
    n_keys = table.keys
    lines = [f"{caption}", "", "| " + " | ".join(table.header) + " |",
             "|" + "|".join([" --- "] * n_keys + [" ---: "] * (len(table.header) - n_keys)) + "|"]
    for row in table.rows:
        cells = [str(v) for v in row[:n_keys]] + [_percent(v) for v in row[n_keys:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                       ("#", r"\#"), ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, repl)
    return text


def to_latex(table: Table, caption: str, label: str) -> str:
    n_keys = table.keys
    spec = "l" * n_keys + "r" * (len(table.header) - n_keys)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{_latex_escape(caption)}}}", rf"\label{{{label}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for row in table.rows:
        cells = [_latex_escape(str(v)) for v in row[:n_keys]]
        cells += [_percent(v).replace(MISSING_CELL, "--") for v in row[n_keys:]]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(table: Table, stem: Path | str, caption: str) -> list[Path]:
    """``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex``."""
    stem = Path(stem)
    paths = [stem.with_suffix(s) for s in (".csv", ".md", ".tex")]
    write_text(paths[0], to_csv(table))
    write_text(paths[1], to_markdown(table, caption))
    write_text(paths[2], to_latex(table, caption, f"tab:{stem.name}"))
    return paths


def _find(records: Sequence[Mapping[str, Any]], setting: str, exclusion: str,
          evaluation: str, attacker: str = PLAIN) -> Mapping[str, Any]:
    for record in records:
        if (record["setting"], record["exclusion"], record["evaluation"],
                record.get("attacker", PLAIN)) == (setting, exclusion, evaluation, attacker):
            return record
    raise WorkflowInputError(f"{setting}/{evaluation}/{exclusion}",
                             "the headline needs this metrics file, which was not given")


def _two_numbers(records: Sequence[Mapping[str, Any]], attacker: str, baseline: str,
                 safeguarded: str, nonperson: str, person: str) -> dict:
    metric = "mean_average_precision_at_r"
    base = _find(records, baseline, "none", nonperson, attacker)["retrieval"][metric]
    kept = _find(records, safeguarded, "excluded", nonperson, attacker)["retrieval"][metric]
    person_value = _find(records, safeguarded, "excluded", person, attacker)["retrieval"][metric]
    by_evaluation = {
        r["evaluation"]: r["retrieval"][metric] for r in records
        if (r["setting"], r["exclusion"], r.get("attacker", PLAIN)) == (
            safeguarded, "excluded", attacker) and r["evaluation"] != nonperson
    }
    ratio = None if base in (None, 0) or kept is None else round(kept / base, 10)
    return {
        "person_reid_accuracy_with_both_safeguards": {
            "evaluation": person, "value": person_value, "by_evaluation": by_evaluation},
        "nonperson_retrieval_kept": {
            "evaluation": nonperson, "ratio": ratio,
            "safeguarded": kept, "baseline_without_safeguards": base},
    }


def headline(records: Sequence[Mapping[str, Any]], baseline: str, safeguarded: str,
             nonperson: str, person: str) -> dict:
    """The study's two numbers: person re-ID accuracy with both safeguards (the safeguarded
    training setting with index exclusion), and the share of the baseline's non-person
    retrieval (no safeguard: baseline setting, no exclusion) that those safeguards keep.

    MAP@R in the study's reading (excluded relevant items are misses) throughout. The top
    level is the plain search (the study's); ``attackers`` holds the same two numbers for
    every attacker, and ``strongest_attacker`` names the attacker other than the plain
    search with the highest person MAP@R with both safeguards (the first listed on a tie;
    None without attackers).
    """
    records = [r if "attacker" in r else {**r, "attacker": PLAIN} for r in records]
    plain = _two_numbers(records, PLAIN, baseline, safeguarded, nonperson, person)
    names = _ordered_unique(r["attacker"] for r in records)
    per_attacker = {name: _two_numbers(records, name, baseline, safeguarded, nonperson, person)
                    for name in names}
    strongest = None
    for name in names[1:] if names and names[0] == PLAIN else names:
        value = per_attacker[name]["person_reid_accuracy_with_both_safeguards"]["value"]
        best = (None if strongest is None else
                per_attacker[strongest]["person_reid_accuracy_with_both_safeguards"]["value"])
        if strongest is None or (value is not None and (best is None or value > best)):
            strongest = name
    return {
        "metric": "mean_average_precision_at_r",
        "baseline": {"setting": baseline, "exclusion": "none"},
        "safeguarded": {"setting": safeguarded, "exclusion": "excluded"},
        **plain,
        "strongest_attacker": strongest,
        "attackers": per_attacker,
    }


def headline_markdown(summary: Mapping[str, Any]) -> str:
    person = summary["person_reid_accuracy_with_both_safeguards"]
    kept = summary["nonperson_retrieval_kept"]
    safe = summary["safeguarded"]["setting"]
    base = summary["baseline"]["setting"]
    strongest = summary.get("strongest_attacker")
    other = summary.get("attackers", {}).get(strongest) if strongest else None
    if other is None:
        return (
            f"- Person re-ID accuracy with both safeguards ({safe} + index exclusion, "
            f"{person['evaluation']} MAP@R): {_percent(person['value'])}%\n"
            f"- Non-person retrieval kept relative to {base} without safeguards "
            f"({kept['evaluation']} MAP@R): {_percent(kept['ratio'])}%\n"
        )
    o_person = other["person_reid_accuracy_with_both_safeguards"]
    o_kept = other["nonperson_retrieval_kept"]
    return (
        f"| {person['evaluation']} / {kept['evaluation']} MAP@R | plain search | "
        f"strongest attacker ({strongest}) |\n"
        "| --- | ---: | ---: |\n"
        f"| Person re-ID accuracy with both safeguards ({safe} + index exclusion) | "
        f"{_percent(person['value'])}% | {_percent(o_person['value'])}% |\n"
        f"| Non-person retrieval kept relative to {base} without safeguards | "
        f"{_percent(kept['ratio'])}% | {_percent(o_kept['ratio'])}% |\n"
    )


def write_tables(metrics_files: Sequence[Path | str], out_dir: Path | str, baseline: str,
                 safeguarded: str, nonperson: str, person: str,
                 row_label: str = "index exclusion") -> list[Path]:
    """main (MAP@R per evaluation), reid (Rank-1, mAP, mINP, TPR@FPR per re-ID evaluation), details
    (every number, CSV only) and the headline."""
    out_dir = Path(out_dir)
    records = by_attacker(load_records(metrics_files))
    written = write_table(assemble(records, MAIN_COLUMNS), out_dir / "main",
                          f"MAP@R (%) per evaluation; rows: training setting, {row_label} and "
                          "attacker (plain search, k-reciprocal re-ranking, query expansion)")
    reid = assemble_long(records, REID_COLUMNS)
    written += write_table(reid, out_dir / "reid",
                           "Person re-ID protocol (%) per evaluation and attacker: Rank-1, mAP "
                           "and mINP (same-camera matches dropped), TPR at FPR of the exact "
                           "same/different pair ROC")
    details = out_dir / "details.csv"
    write_text(details, to_csv(assemble_long(records, DETAIL_COLUMNS)))
    summary = headline(records, baseline, safeguarded, nonperson, person)
    write_json(out_dir / "headline.json", summary)
    write_text(out_dir / "headline.md", headline_markdown(summary))
    return [*written, details, out_dir / "headline.json", out_dir / "headline.md"]

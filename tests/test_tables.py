"""Table assembly from metrics files: layout, formats, headline, and a missing input."""

from __future__ import annotations

import csv
import io
import json

import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.evaluate.tables import (
    MAIN_COLUMNS,
    assemble,
    by_attacker,
    headline,
    load_records,
    write_tables,
)

# (setting, exclusion) -> {evaluation: MAP@R}
VALUES = {
    ("ms", "none"): {"nonperson": 0.80, "person": 0.50, "market1501": 0.30},
    ("ms", "excluded"): {"nonperson": 0.75, "person": 0.10, "market1501": 0.05},
    ("confusion", "none"): {"nonperson": 0.70, "person": 0.08, "market1501": 0.04},
    ("confusion", "excluded"): {"nonperson": 0.656, "person": 0.012, "market1501": 0.01},
}


def _record(setting, exclusion, evaluation, value, attacker=False):
    record = {
        "setting": setting, "exclusion": exclusion, "evaluation": evaluation,
        "retrieval": {"mean_average_precision": value / 2, "mean_average_precision_at_r": value,
                      "k": 3, "scored_queries": 10},
        "retrieval_indexed": {"mean_average_precision": value / 2,
                              "mean_average_precision_at_r": value, "k": 3, "scored_queries": 9},
    }
    if evaluation == "market1501":
        record["reid"] = {"rank1": value + 0.1, "rank5": value + 0.2, "rank10": value + 0.3,
                          "mAP": value, "mINP": value / 4, "scored_queries": 10}
        record["roc"] = {"auc": 0.9, "fpr": [0, 1], "tpr": [0, 1], "thresholds": [None, -1],
                         "positive_pairs": 1, "negative_pairs": 1, "tpr_at_fpr_1e-04": 0.125,
                         "tpr_at_fpr_1e-03": 0.25, "tpr_at_fpr_1e-02": 0.5}
    if attacker:
        # A re-ranking attacker doubles MAP@R (and adds 0.05 to Rank-1).
        section = {"params": {"k1": 20}, "retrieval": {
            "mean_average_precision": value, "mean_average_precision_at_r": 2 * value,
            "k": 3, "scored_queries": 10}}
        if "reid" in record:
            section["reid"] = {**record["reid"], "rank1": value + 0.15}
        # A weaker one halves it; listed second although its name sorts first.
        weaker = {"retrieval": {"mean_average_precision": value / 4,
                                "mean_average_precision_at_r": value / 2, "k": 3,
                                "scored_queries": 10}}
        record["attackers"] = {"alpha_qe": weaker, "k_reciprocal": section}
        record["attacker_order"] = ["k_reciprocal", "alpha_qe"]
    return record


def _write_all(tmp_path, attacker=False):
    paths = []
    for (setting, exclusion), evals in VALUES.items():
        for evaluation, value in evals.items():
            path = tmp_path / "metrics" / setting / evaluation / f"{exclusion}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_record(setting, exclusion, evaluation, value, attacker)))
            paths.append(path)
    return paths


def test_tables_rows_columns_and_formats(tmp_path):
    paths = _write_all(tmp_path)
    out = tmp_path / "tables"
    written = write_tables(paths, out, "ms", "confusion", "nonperson", "person")
    assert {p.name for p in written} >= {"main.csv", "main.md", "main.tex", "reid.csv",
                                         "headline.json", "details.csv"}
    rows = list(csv.reader(io.StringIO((out / "main.csv").read_text())))
    assert rows[0] == ["setting", "exclusion", "attacker", "nonperson", "person", "market1501"]
    assert rows[1:] == [
        ["ms", "none", "plain", "0.8", "0.5", "0.3"],
        ["ms", "excluded", "plain", "0.75", "0.1", "0.05"],
        ["confusion", "none", "plain", "0.7", "0.08", "0.04"],
        ["confusion", "excluded", "plain", "0.656", "0.012", "0.01"],
    ]
    md = (out / "main.md").read_text()
    assert "| confusion | excluded | plain | 65.60 | 1.20 | 1.00 |" in md
    tex = (out / "main.tex").read_text()
    assert r"\begin{tabular}{lllrrr}" in tex
    assert "confusion & excluded & plain & 65.60 & 1.20 & 1.00" in tex
    # Long: one row per (setting, exclusion, attacker, evaluation), one column per metric.
    reid = list(csv.reader(io.StringIO((out / "reid.csv").read_text())))
    assert reid[0] == ["setting", "exclusion", "attacker", "evaluation", "R-1", "mAP", "mINP",
                       "TPR@FPR=1e-04", "TPR@FPR=1e-03", "TPR@FPR=1e-02"]
    assert reid[1] == ["ms", "none", "plain", "market1501", repr(0.3 + 0.1), "0.3", "0.075",
                       "0.125", "0.25", "0.5"]
    assert len(reid) == 1 + 4
    summary = json.loads((out / "headline.json").read_text())
    assert summary["person_reid_accuracy_with_both_safeguards"]["value"] == 0.012
    assert summary["nonperson_retrieval_kept"]["ratio"] == pytest.approx(0.656 / 0.8)
    assert summary["person_reid_accuracy_with_both_safeguards"]["by_evaluation"] == {
        "person": 0.012, "market1501": 0.01}
    assert summary["strongest_attacker"] is None


def test_attackers_become_rows_and_the_headline_names_the_strongest(tmp_path):
    paths = _write_all(tmp_path, attacker=True)
    out = tmp_path / "tables"
    write_tables(paths, out, "ms", "confusion", "nonperson", "person")
    rows = list(csv.reader(io.StringIO((out / "main.csv").read_text())))
    assert rows[1:4] == [["ms", "none", "plain", "0.8", "0.5", "0.3"],
                         ["ms", "none", "k_reciprocal", "1.6", "1.0", "0.6"],
                         ["ms", "none", "alpha_qe", "0.4", "0.25", "0.15"]]
    reid = list(csv.reader(io.StringIO((out / "reid.csv").read_text())))
    assert reid[2][:5] == ["ms", "none", "k_reciprocal", "market1501", repr(0.3 + 0.15)]
    assert max(len(r) for r in reid) <= 10
    summary = json.loads((out / "headline.json").read_text())
    assert summary["strongest_attacker"] == "k_reciprocal"
    strongest = summary["attackers"]["k_reciprocal"]
    assert strongest["person_reid_accuracy_with_both_safeguards"]["value"] == 0.024
    assert strongest["nonperson_retrieval_kept"]["ratio"] == pytest.approx(0.656 / 0.8)
    md = (out / "headline.md").read_text()
    assert "| 1.20% | 2.40% |" in md and "strongest attacker (k_reciprocal)" in md


def test_tables_are_byte_identical_between_runs_and_follow_input_order(tmp_path):
    paths = _write_all(tmp_path)
    write_tables(paths, tmp_path / "a", "ms", "confusion", "nonperson", "person")
    write_tables(paths, tmp_path / "b", "ms", "confusion", "nonperson", "person")
    for name in ("main.csv", "main.md", "main.tex", "reid.tex", "details.csv", "headline.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # Data-driven: reversed inputs give reversed rows.
    table = assemble(by_attacker(load_records(paths[::-1])), MAIN_COLUMNS)
    assert [row[:3] for row in table.rows][0] == ["confusion", "excluded", "plain"]


def test_extra_rows_with_missing_cells_are_blank(tmp_path):
    paths = _write_all(tmp_path)
    extra = tmp_path / "anon.json"
    extra.write_text(json.dumps(_record("ms+mosaic_24", "none", "person", 0.2)))
    table = assemble(by_attacker(load_records([*paths, extra])), MAIN_COLUMNS)
    assert table.rows[-1] == ["ms+mosaic_24", "none", "plain", None, 0.2, None]
    write_tables([*paths, extra], tmp_path / "t", "ms", "confusion", "nonperson", "person")
    assert "| ms+mosaic_24 | none | plain | – | 20.00 | – |" in (tmp_path / "t" / "main.md").read_text()


def test_missing_metrics_file_is_a_clear_error(tmp_path):
    paths = _write_all(tmp_path)
    gone = paths[3]
    gone.unlink()
    with pytest.raises(WorkflowInputError, match="metrics file not found") as info:
        write_tables(paths, tmp_path / "tables", "ms", "confusion", "nonperson", "person")
    assert str(gone) in str(info.value)
    assert not (tmp_path / "tables").exists()


def test_headline_needs_its_rows(tmp_path):
    paths = [p for p in _write_all(tmp_path) if "confusion" not in str(p)]
    with pytest.raises(WorkflowInputError, match="headline needs"):
        headline(load_records(paths), "ms", "confusion", "nonperson", "person")


def test_duplicate_cells_and_incomplete_files_are_errors(tmp_path):
    paths = _write_all(tmp_path)
    with pytest.raises(WorkflowInputError, match="two metrics files"):
        assemble(by_attacker(load_records([paths[0], paths[0]])), MAIN_COLUMNS)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"setting": "ms"}))
    with pytest.raises(WorkflowInputError, match="lacks"):
        load_records([broken])

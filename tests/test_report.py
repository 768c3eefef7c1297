"""The report's building blocks: words for keys, HTML views of tables, the rule graph."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.core.names import (
    column_title,
    evaluation_title,
    safeguard_title,
    setting_title,
)
from overlearning.evaluate.html_tables import render_csv, render_json, render_records
from overlearning.workflow.report_graph import graph_spec, layered_order, rule_edges
from tests.conftest import REPO


class _Cells(HTMLParser):
    """Header and body cells' text of the first table on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            text = " ".join(" ".join(self._cell).split())
            (self.headers if tag == "th" else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _cells(path) -> _Cells:
    parser = _Cells()
    parser.feed(path.read_text())
    return parser


def test_keys_become_words_and_unknown_keys_stay():
    assert setting_title("confusion_tv") == "confusion loss on persons (torchvision ViT)"
    assert setting_title("ms") == "MultiSimilarity, no persons in training"
    assert setting_title("pretrained_open_clip_b16") == (
        "OpenAI CLIP ViT-B/16 (open_clip), as downloaded (no fine-tuning)")
    assert setting_title("pretrained_new_trunk") == "new_trunk, as downloaded (no fine-tuning)"
    assert setting_title("my_new_setting") == "my_new_setting"
    assert evaluation_title("market1501_probe_torso") == "Market-1501, torso only probe"
    assert evaluation_title("cuhk03_labeled") == "CUHK03-NP labeled re-ID"
    assert evaluation_title("nonperson") == "non-person retrieval (utility)"
    assert safeguard_title("excluded") == "index exclusion"
    assert safeguard_title("anon_gt_mosaic_24") == "mosaic 24 px blocks, all persons (oracle)"
    assert safeguard_title("anon_detected_noise_0.5") == "noise 0.5 σ, detected persons"
    assert safeguard_title("anon_x_mosaic_24") == "anon_x_mosaic_24"
    assert column_title("market1501 R-1") == "Market-1501 re-ID: R-1"


def test_csv_table_page_has_worded_headers_and_percentages(tmp_path):
    csv = tmp_path / "main.csv"
    csv.write_text("setting,exclusion,nonperson,market1501_probe_torso\n"
                   "ms,none,0.7253174603,0.2135416667\nconfusion,excluded,0.75,0.0\n")
    page = _cells(render_csv(csv, tmp_path / "main.html", "MAP@R", "caption", percent=True))
    assert page.headers == ["training setting setting", "test-time safeguard exclusion",
                            "non-person retrieval (utility) nonperson",
                            "Market-1501, torso only probe market1501_probe_torso"]
    assert page.rows == [["MultiSimilarity, no persons in training ms",
                          "no test-time safeguard none", "72.5", "21.4"],
                         ["confusion loss on persons confusion", "index exclusion excluded",
                          "75.0", "0.0"]]


def test_json_and_records_pages_flatten_nested_entries(tmp_path):
    record = tmp_path / "best.json"
    record.write_text('{"trial": 3, "params": {"lr": 2.5e-05, "margin": 0.02}, "tags": ["a", "b"]}')
    page = _cells(render_json(record, tmp_path / "best.html", "best", "caption"))
    assert page.rows == [["trial", "3"], ["params / lr", "2.5e-05"], ["params / margin", "0.02"],
                         ["tags", "a, b"]]
    out = render_records([("vis_test", {"excluded": 18, "categories": {"A": 0}}),
                          ("market1501", {"excluded": 39, "categories": {"A": 39}, "images": 52})],
                         tmp_path / "counts.html", "counts", "caption")
    page = _cells(out)
    assert page.headers == ["set", "excluded", "A categories / A", "images"]
    assert page.rows == [["vis_test", "18", "0", "–"], ["market1501", "39", "39", "52"]]


def test_bad_tables_stop_with_the_file_and_write_nothing(tmp_path):
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    with pytest.raises(WorkflowInputError, match=r"ragged\.csv.*line 3 has 1 cells"):
        render_csv(ragged, tmp_path / "ragged.html", "t", "c")
    with pytest.raises(WorkflowInputError, match="missing.csv"):
        render_csv(tmp_path / "missing.csv", tmp_path / "missing.html", "t", "c")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(WorkflowInputError, match="expected a JSON object"):
        render_json(listed, tmp_path / "list.html", "t", "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json", "ragged.csv"]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "render_tables.py"),
                           "--csv", str(ragged), str(tmp_path / "x.html"), "t"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    # One error line naming the file (beside the progress bar).
    errors = [line for line in proc.stderr.splitlines() if line.startswith("render_tables:")]
    assert len(errors) == 1 and "ragged.csv" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.html").exists()


class _Rule:
    def __init__(self, name):
        self.name = name


class _Job:
    def __init__(self, rule, key):
        self.rule, self.key = _Rule(rule), key


def test_rule_graph_has_one_node_per_rule_and_every_edge_points_down():
    # detect runs on a person set (right after `person`) and on the VIS test split (after
    # `crops`, one level later): Snakemake's per-level graph shows it twice.
    person, crops_pre, crops = _Job("person", 1), _Job("frames", 1), _Job("crops", 1)
    detect_p, detect_v = _Job("detect", "p"), _Job("detect", "v")
    table = _Job("tables", 1)
    deps = {person: [], crops_pre: [], crops: [crops_pre], detect_p: [person],
            detect_v: [crops], table: [detect_p, detect_v]}
    edges = rule_edges(deps, lambda job: job.rule.name)
    assert edges == {("person", "detect"), ("frames", "crops"), ("crops", "detect"),
                     ("detect", "tables")}
    order = layered_order([j.rule.name for j in deps], edges)
    assert order == ["frames", "person", "crops", "detect", "tables"]
    spec = graph_spec(order, edges)
    assert [n["rule"] for n in spec["nodes"]] == order
    links = spec["links"] + spec["links_direct"]
    assert len(links) == len(edges)
    assert all(link["source"] < link["target"] for link in links)
    assert all(link["target"] - link["source"] == 1 for link in spec["links_direct"])
    assert all(link["target"] - link["source"] > 1 for link in spec["links"])

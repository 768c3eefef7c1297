"""The arguments every workflow script shares (overlearning/workflow/cli.py)."""

from __future__ import annotations

import logging
import os

import pytest

from overlearning.workflow.cli import ScriptParser, report


def test_shared_arguments_and_their_defaults() -> None:
    parser = ScriptParser("doc", threads=True, image_format=True)
    parser.add_out("folder to write")
    args = parser.parse_args(["--out", "x"])
    assert (args.out, args.threads, args.ext, args.quality, args.log_level) == ("x", 1, "jpg", 75, "INFO")
    with pytest.raises(SystemExit):
        ScriptParser("doc").parse_args(["--threads", "2"])  # only where asked for


def test_parse_sets_the_log_level_and_goes_offline(tmp_path, monkeypatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TORCH_HOME"):
        monkeypatch.delenv(var, raising=False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    args = ScriptParser("doc", weights_cache=True).parse(
        ["--cache", str(tmp_path), "--log-level", "WARNING"])
    assert args.cache == str(tmp_path)
    assert root.level == logging.WARNING
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_HOME"].startswith(str(tmp_path))
    with pytest.raises(SystemExit):
        ScriptParser("doc", weights_cache=True).parse([])  # the cache is required


def test_report_is_one_sorted_json_line(capsys) -> None:
    report({"b": 1, "a": [2]})
    assert capsys.readouterr().err == '{"a": [2], "b": 1}\n'


def test_settings_arguments_are_parsed_once_and_bad_json_stops(capsys) -> None:
    parser = ScriptParser("doc")
    parser.add_settings("--models", "config models.*")
    assert parser.parse_args(["--models", '{"sam": {"variant": "vit_b"}}']).models == {
        "sam": {"variant": "vit_b"}}
    with pytest.raises(SystemExit):
        parser.parse_args(["--models", "{sam"])
    assert "--models: not valid JSON" in capsys.readouterr().err

"""The configuration is checked before anything runs, with messages that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from overlearning.config import (
    ConfigError,
    check_dataset_sources,
    config_hash,
    validate_config,
)
from tests.conftest import REPO, run_snakemake


@pytest.fixture()
def paper() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_paper_and_demo_configs_are_valid(paper: dict) -> None:
    validate_config(paper)
    demo = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    merged = copy.deepcopy(paper)

    def merge(into: dict, new: dict) -> None:
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(merged, demo)
    validate_config(merged)


def test_paper_values_match_reference(paper: dict) -> None:
    settings = paper["training"]["settings"]
    assert settings["ms"]["lr"] == 2.6036594850360824e-06
    assert settings["confusion"]["gamma"] == 31.85830217870389
    assert settings["confusion"]["margin"] == 0.012645424823545037
    assert paper["detection"]["box_threshold"] == 0.2
    assert paper["detection"]["text_threshold"] == 0.1
    assert len(paper["detection"]["prompts"]) == 40
    assert paper["detection"]["prompts"][25] == "a person"
    assert paper["exclusion"] == {"nms_iou": 0.7, "min_confidence": None, "match_iou": 0.5}


def test_misspelt_key_is_named(paper: dict) -> None:
    paper["training"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"training\.epoch"):
        validate_config(paper)


def test_wrong_type_is_named(paper: dict) -> None:
    paper["training"]["batch_size"] = "sixty-four"
    with pytest.raises(ConfigError, match=r"training\.batch_size.*not of type 'integer'"):
        validate_config(paper)


def test_nested_setting_error_is_named(paper: dict) -> None:
    paper["training"]["settings"]["confusion"]["loss"] = "contrastive"
    with pytest.raises(ConfigError, match=r"training\.settings\.confusion\.loss"):
        validate_config(paper)


def test_bad_checksum_format_is_named(paper: dict) -> None:
    paper["datasets"]["ovis"]["archives"][0]["sha256"] = "abc"
    with pytest.raises(ConfigError, match=r"datasets\.ovis\.archives\[0\]\.sha256"):
        validate_config(paper)


def test_missing_dataset_names_config_key(paper: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"datasets\.cuhk03\.archives\[0\]\.path"):
        check_dataset_sources(paper)
    paper["datasets"]["market1501"]["directory"] = "nowhere"
    with pytest.raises(ConfigError, match=r"datasets\.market1501\.directory"):
        check_dataset_sources(paper)


def test_config_hash_is_stable(paper: dict) -> None:
    assert config_hash(paper) == config_hash(copy.deepcopy(paper))
    other = copy.deepcopy(paper)
    other["seed"] = 7
    assert config_hash(other) != config_hash(paper)


def _paper_tree(root: Path, paper: dict) -> None:
    """Empty files in the places the paper config expects the downloads."""
    for source in paper["datasets"].values():
        for archive in source["archives"]:
            path = root / archive["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def test_snakemake_stops_naming_missing_dataset(tmp_path: Path, paper: dict) -> None:
    _paper_tree(tmp_path, paper)
    (tmp_path / paper["datasets"]["ovis"]["archives"][1]["path"]).unlink()
    proc = run_snakemake(["-n"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "datasets.ovis.archives[1].path" in proc.stdout + proc.stderr


def test_snakemake_stops_on_schema_error(tmp_path: Path, paper: dict) -> None:
    _paper_tree(tmp_path, paper)
    proc = run_snakemake(["-n", "--config", "seeed=1"], cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "unknown config key seeed" in proc.stdout + proc.stderr

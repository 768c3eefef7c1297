"""The configuration is checked before anything runs, with messages that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from overlearning.workflow.config import (
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
    exclusion = paper["exclusion"]
    assert (exclusion["nms_iou"], exclusion["min_confidence"], exclusion["match_iou"]) == (
        0.7, None, 0.5)


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


def _job_counts(dry_run_output: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    in_stats = False
    for line in dry_run_output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_stats = True
            continue
        if in_stats:
            parts = line.split()
            if not parts or parts[0] == "total":
                break
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


def test_paper_dry_run_plans_the_full_graph_from_archives(tmp_path: Path, paper: dict) -> None:
    _paper_tree(tmp_path, paper)
    proc = run_snakemake(["-n", "--quiet", "rules"], cwd=tmp_path)
    counts = _job_counts(proc.stdout + proc.stderr)
    settings = len(paper["training"]["settings"])
    # The paper's downloads are zips (and one plain JSON): verified and read in place.
    assert counts.get("verify_downloads") == 4 and "extract" not in counts
    assert counts.get("train") == settings
    assert counts.get("detect_shard") == paper["detection"]["shards"] * len(paper["detection"]["sets"])
    for rule in ("vis_frames", "vis_split", "vis_crops", "person_set", "weights", "segment",
                 "embed", "metrics", "tables"):
        assert counts.get(rule, 0) >= 1, (rule, counts)
    assert "demo_downloads" not in counts
    # The center setting's values were never published: the paper tunes it, and only it.
    assert counts.get("tune") == 1, counts


def test_paper_config_tunes_center_and_trains_it_with_the_result(paper: dict) -> None:
    assert paper["tuning"]["settings"] == ["center"]
    assert paper["training"]["use_tuned"] is True


def test_paper_dry_run_uses_extracted_directories_in_place(tmp_path: Path, paper: dict) -> None:
    """Datasets given as directories: no extraction job, everything else planned."""
    overrides = {"datasets": {}}
    for name, source in paper["datasets"].items():
        root = tmp_path / "unpacked" / name
        for key in ("images", "masks"):
            if key in source:
                (root / source[key]).mkdir(parents=True, exist_ok=True)
        if "annotations" in source:
            (root / source["annotations"]).parent.mkdir(parents=True, exist_ok=True)
            (root / source["annotations"]).touch()
        overrides["datasets"][name] = dict(source, archives=[], directory=str(root))
    (tmp_path / "unpacked.yaml").write_text(yaml.safe_dump(overrides))
    proc = run_snakemake(["-n", "--quiet", "rules", "--configfile", "unpacked.yaml"], cwd=tmp_path)
    counts = _job_counts(proc.stdout + proc.stderr)
    assert "extract" not in counts
    assert counts.get("vis_frames") == 1 and counts.get("tables") == 1, counts


def test_settings_naming_an_undefined_model_are_named(paper: dict) -> None:
    broken = copy.deepcopy(paper)
    del broken["models"]["open_clip_b16"]
    with pytest.raises(ConfigError, match="evaluation.pretrained: 'open_clip_b16' needs models.open_clip_b16"):
        validate_config(broken)
    broken = copy.deepcopy(paper)
    del broken["models"]["segformer_clothes"]
    with pytest.raises(ConfigError, match="clothes.method: segformer needs models.segformer_clothes"):
        validate_config(broken)
    # Without the segmenter and its probe, the config is whole (the weights rule skips it).
    broken["clothes"]["method"] = "grounding_sam"
    validate_config(broken)

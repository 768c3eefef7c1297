"""The configuration is checked before anything runs, with messages that name the key."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from overlearning.workflow.config import (
    ConfigError,
    MissingDownload,
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


def test_missing_downloads_are_listed_by_config_key(paper: dict, tmp_path: Path,
                                                   monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    paper["datasets"]["market1501"]["directory"] = "nowhere"
    missing = check_dataset_sources(paper)
    assert [str(m) for m in missing if "cuhk03" in m.key] == [
        f"datasets.cuhk03.archives[{i}].path: file not found: {a['path']}"
        for i, a in enumerate(paper["datasets"]["cuhk03"]["archives"])]
    assert [m for m in missing if m.directory] == [
        MissingDownload("datasets.market1501.directory", "nowhere", True)]
    # Downloads a rule of the workflow makes (the demo's) are not missing.
    produced = {a["path"] for source in paper["datasets"].values() for a in source["archives"]}
    assert [m.key for m in check_dataset_sources(paper, produced)] == [
        "datasets.market1501.directory"]
    # A wrong entry is still a config error at once.
    paper["datasets"]["ovis"]["archives"] = []
    with pytest.raises(ConfigError, match="datasets.ovis: give either archives or directory"):
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


def test_stand_in_for_a_download_fails_when_started_anyway(tmp_path: Path, paper: dict) -> None:
    """Without onstart (--no-hooks), the job standing in for the downloads fails in one line
    naming a missing download, and creates nothing."""
    archive = paper["datasets"]["ovis"]["archives"][0]["path"]
    run = run_snakemake(["--cores", "1", "--no-hooks", archive], cwd=tmp_path, check=False)
    assert run.returncode != 0
    log = (tmp_path / "logs" / "missing_downloads" / "all.log").read_text()
    assert "datasets.youtube_vis.archives[0].path: not downloaded" in log
    assert "6 more:" in log and archive in log
    assert not (tmp_path / "downloads").exists()


def test_a_run_that_needs_no_download_goes_ahead(tmp_path: Path) -> None:
    """Missing downloads stop only the runs that need them: the weights (the login node's
    step before the data) are made without them."""
    (tmp_path / "no-data.yaml").write_text(yaml.safe_dump({"demo": {"generate": False}}))
    demo = ["--configfile", str(REPO / "config.demo.yaml"), "no-data.yaml", "--cores", "1"]
    run = run_snakemake([*demo, "demo-run/resources/weights/sam/manifest.json"], cwd=tmp_path)
    assert (tmp_path / "demo-run/resources/weights/sam/model.safetensors").is_file()
    assert "datasets.youtube_vis.archives[0].path: file not found" in run.stderr
    assert not (tmp_path / "demo-run/resources/weights/timm_clip").exists()


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
    for rule in ("vis_frames", "vis_split", "vis_crops", "person_set", "segment",
                 "embed", "metrics", "tables"):
        assert counts.get(rule, 0) >= 1, (rule, counts)
    # One weights job per model: the paper uses every model it configures.
    assert counts.get("model_weights") == len(paper["models"]), counts
    assert "demo_downloads" not in counts and "missing_downloads" not in counts
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


def _dag_descendants(dot: str, label: str) -> set[str]:
    """Rule names of every job downstream of the job labelled ``label`` in `--dag` output."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]*)"', dot, re.M))
    children: dict[str, set[str]] = {}
    for parent, child in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M):
        children.setdefault(parent, set()).add(child)
    (start,) = [node for node, text in labels.items() if text == label]
    seen, todo = set(), [start]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return {labels[node].split("\\n")[0] for node in seen}


def test_paper_graph_sends_each_model_only_to_its_users(tmp_path: Path, paper: dict) -> None:
    """In the paper's DAG (before any download), what depends on each model's weights job:
    SAM and GroundingDINO reach no training, tuning or embedding (the paper's clothes probe
    is the SegFormer's), the SegFormer only the clothes probe's embedding; each trunk
    reaches its own users only."""
    dot = run_snakemake(["--dag"], cwd=tmp_path).stdout
    models = {key: _dag_descendants(dot, f"model_weights\\nmodel: {key}") for key in paper["models"]}
    for key in ("sam", "grounding_dino"):
        assert not models[key] & {"train", "tune", "embed", "embed_pretrained", "embed_derived",
                                  "embed_derived_pretrained"}, (key, models[key])
    assert {"segment", "exclusion_vis_test", "metrics"} <= models["sam"]
    assert "detect_shard" in models["grounding_dino"] and "clothes_probe" not in models["sam"]
    # The clothes probe it cuts is embedded in each model's derived job, not with the data.
    assert {"clothes_probe", "embed_derived", "embed_derived_pretrained", "metrics"} <= \
        models["segformer_clothes"]
    assert not models["segformer_clothes"] & {"train", "tune", "embed", "embed_pretrained"}
    assert {"train", "tune", "embed"} <= models["timm_clip"]
    assert "tune" not in models["torchvision_vit"] and "explain" in models["torchvision_vit"]
    assert models["open_clip_b16"] & {"train", "embed"} == set()

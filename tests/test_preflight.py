"""Pre-flight pieces that need no cluster: SLURM's formats, jobs against partition limits,
weights manifests (per model too) and download checksums on real files.

The whole check against a real SLURM (partitions, account, driver feature, the refusal of a
job longer than its partition allows) is tests/test_slurm.py.
"""

from __future__ import annotations

import json
from hashlib import sha256
from pathlib import Path

import pytest

from overlearning.workflow.preflight import (
    ChecksumCache,
    PlannedJob,
    Report,
    check_downloads,
    check_images,
    check_jobs,
    check_weights,
    weights_manifests,
)
from overlearning.workflow.slurm_cluster import Node, Partition, gres_gpus, slurm_minutes

ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
ABC_MD5 = "900150983cd24fb0d6963f7d28e17f72"  # RFC 1321


@pytest.mark.parametrize(("text", "minutes"), [
    ("UNLIMITED", None), ("5", 5), ("00:05:00", 5), ("1:00:00", 60), ("2-00:00:00", 2880),
    ("1-12:30:00", 2190), ("00:00:30", 1)])
def test_slurm_times_in_minutes(text: str, minutes: int | None) -> None:
    assert slurm_minutes(text) == minutes


@pytest.mark.parametrize(("gres", "gpus"), [
    ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4), ("(null)", 0), ("gpu:a100:2,gpu:v100:1", 3)])
def test_gpus_of_a_node(gres: str, gpus: int) -> None:
    assert gres_gpus(gres) == gpus


def _job(rule: str, runtime: int, local: bool = False, **resources: object) -> PlannedJob:
    return PlannedJob(rule, 8, {"runtime": runtime, "mem_mb": 1000, **resources}, local)


def test_job_longer_than_its_partition_is_named_with_both_times() -> None:
    node = Node("n1", cpus=16, memory_mb=64000, gpus=4)
    partitions = {"short": Partition("short", up=True, default=False, max_minutes=60,
                                     nodes=[node]),
                  "cpu": Partition("cpu", up=True, default=True, max_minutes=None,
                                   nodes=[Node("n2", 32, 128000, 0)])}
    report = Report()
    jobs = [_job("train", 910, gpu=1, cpus_per_gpu=8, slurm_partition="short"),
            _job("train", 910, gpu=1, cpus_per_gpu=8, slurm_partition="short"),
            _job("extract", 60), _job("embed", 30, gpu=2, slurm_partition="cpu"),
            _job("weights", 9999, local=True), _job("segment", 5, slurm_partition="nope")]
    used = check_jobs(jobs, partitions, None, report)
    assert used == {"short", "cpu"}
    assert ("partition rule train: runtime 910 min exceeds partition short's time limit 60 min"
            in report.problems)
    assert "partition rule embed: 2 GPUs requested, partition cpu's nodes have at most 0" \
        in report.problems
    assert any(p.startswith("partition segment (1 job): partition nope does not exist")
               for p in report.problems)
    assert len(report.problems) == 3  # extract fits the default partition; weights is local
    assert "fits cpu: time 60 min (limit none), memory 1000 of 128000 MB" in report.table()
    assert "REFUSED, 3 problem(s)" in report.summary()


def _manifest(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(
        {name: sha256(data).hexdigest() for name, data in files.items()}))


def test_weights_check_reads_every_per_model_manifest(tmp_path: Path) -> None:
    cache = tmp_path / "weights"
    _manifest(cache / "sam", {"sam.pth": b"sam weights"})
    _manifest(cache / "timm_clip", {"trunk.safetensors": b"trunk"})
    assert weights_manifests(cache) == [cache / "sam", cache / "timm_clip"]
    report = Report()
    check_weights(cache, set(), report)
    assert not report.problems and "all 1 files verify" in report.table()
    (cache / "timm_clip" / "trunk.safetensors").write_bytes(b"changed")
    report = Report()
    check_weights(cache, set(), report)
    (problem,) = report.problems
    assert "timm_clip/trunk.safetensors" in problem and "checksum differs" in problem


def test_missing_weights_are_fine_only_when_this_run_makes_them(tmp_path: Path) -> None:
    report = Report()
    check_weights(tmp_path / "none", {"model_weights"}, report)
    assert not report.problems
    check_weights(tmp_path / "none", {"train"}, report)
    assert len(report.problems) == 1 and "no manifest.json" in report.problems[0]


def test_download_checksums_from_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.zip").write_bytes(b"abc")
    (tmp_path / "bad.zip").write_bytes(b"abd")
    datasets = {"a": {"archives": [{"path": "good.zip", "sha256": ABC_SHA256, "md5": ABC_MD5},
                                   {"path": "bad.zip", "sha256": ABC_SHA256}]},
                "b": {"archives": [{"path": "missing.zip"}, {"path": "made.zip"}]},
                "c": {"archives": [{"path": "not-needed.zip"}]}}
    report = Report()
    cache = ChecksumCache(tmp_path / "cache.json")
    check_downloads(datasets, {"a", "b"}, {"made.zip"}, report, cache)
    assert report.problems == ["download bad.zip: sha256 differs from config.yaml "
                               "(incomplete or corrupt download?)",
                               "download missing.zip: missing (docs/datasets.md)"]
    assert "md5, sha256 match" in report.table() and "made by this run" in report.table()
    # Known digests are reused for the same file version, recomputed for a changed one.
    assert json.loads((tmp_path / "cache.json").read_text())
    (tmp_path / "bad.zip").write_bytes(b"abc")
    report = Report()
    check_downloads(datasets, {"a"}, set(), report, ChecksumCache(tmp_path / "cache.json"))
    assert not report.problems


def test_image_must_match_its_recorded_digest(tmp_path: Path) -> None:
    image = tmp_path / "overlearning-gpu.sif"
    image.write_bytes(b"abc")
    cache = ChecksumCache(tmp_path / "cache.json")
    report = Report()
    check_images([str(image), "docker://example/image:1"], report, cache)
    assert report.problems == [f"image {image}: no recorded digest {image}.sha256 "
                               "(containers/build.sh writes it)"]
    assert "remote: Snakemake pulls it" in report.table()
    Path(f"{image}.sha256").write_text(f"{ABC_SHA256}  {image.name}\n")  # sha256sum's format
    report = Report()
    check_images([str(image)], report, cache)
    assert not report.problems and "digest matches" in report.table()
    image.write_bytes(b"abd")  # another image under the recorded name
    report = Report()
    check_images([str(image), str(tmp_path / "missing.sif")], report, cache)
    changed, missing = sorted(report.problems, key=lambda p: "missing.sif" in p)
    assert changed.startswith(f"image {image}: digest sha256:") and \
        "differs from the recorded sha256:ba7816bf8f01" in changed
    assert missing == f"image {tmp_path / 'missing.sif'}: not found (make container, " \
        "docs/hpc.md step 2)"

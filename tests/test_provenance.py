"""Provenance sidecars: path naming, git state, container digest, atomic writing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overlearning.workflow import provenance
from overlearning.workflow.config import config_hash
from overlearning.workflow.provenance import (
    git_state,
    provenance_path,
    provenance_record,
    write_provenance,
)

CONFIG = {"seed": 123, "training": {"epochs": 2}, "containers": {"cpu": "none", "gpu": "none"}}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "SLURM_JOB_ID",
                "OVERLEARNING_GIT_COMMIT", "OVERLEARNING_GIT_DIRTY"):
        monkeypatch.delenv(var, raising=False)


def test_provenance_path_replaces_suffix():
    assert provenance_path(Path("m/x/none.json")) == Path("m/x/none.provenance.json")
    assert provenance_path("results/tables/main.csv") == Path("results/tables/main.provenance.json")


def test_write_provenance_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    target = tmp_path / "metrics" / "ms" / "none.json"
    path = write_provenance(target, CONFIG, extra={"rule": "metrics"})
    assert path == tmp_path / "metrics" / "ms" / "none.provenance.json"
    record = json.loads(path.read_text())
    assert record["config_sha256"] == config_hash(CONFIG)
    # Same config in another key order: same hash (it is the resolved content that counts).
    assert config_hash(dict(reversed(list(CONFIG.items())))) == record["config_sha256"]
    assert record["container"] == {"image": "none", "digest": "none"}
    assert record["host"]["slurm_job_id"] == "4242"
    assert record["host"]["host"]
    runtime = record["runtime"]
    import torch

    assert runtime["torch"] == torch.__version__
    assert runtime["python"].count(".") == 2
    assert runtime["gpu"] == ("none" if not torch.cuda.is_available() else torch.cuda.get_device_name(0))
    assert record["extra"] == {"rule": "metrics"}
    # The workflow checkout is a git repository: a real 40-hex commit and a boolean flag.
    assert len(record["git"]["commit"]) == 40
    assert isinstance(record["git"]["dirty"], bool)
    # No temporary file left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["none.provenance.json"]


def test_slurm_job_id_null_outside_slurm(tmp_path):
    record = json.loads(write_provenance(tmp_path / "t.csv", CONFIG).read_text())
    assert record["host"]["slurm_job_id"] is None


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git binary missing")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@needs_git
def test_git_state_commit_and_dirty(tmp_path):
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / ".gitignore").write_text("results/\n")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}
    # Ignored outputs do not make the checkout dirty ...
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text("{}")
    assert git_state(tmp_path)["dirty"] is False
    # ... a changed tracked file does, and so does a new untracked source file.
    (tmp_path / "a.txt").write_text("two\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}
    _git(tmp_path, "checkout", "-q", "a.txt")
    (tmp_path / "new_script.py").write_text("print(1)\n")
    assert git_state(tmp_path)["dirty"] is True


@needs_git
def test_git_state_without_git_binary_reads_git_dir(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "init")
    head = _git(tmp_path, "rev-parse", "HEAD")
    git = shutil.which("git")
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # as in a minimal image
    assert git_state(tmp_path) == {"commit": head, "dirty": "unknown"}
    # After `git gc` the branch lives only in packed-refs.
    subprocess.run([git, "pack-refs", "--all"], cwd=tmp_path, check=True)
    assert not (tmp_path / ".git" / "refs" / "heads" / "main").exists()
    assert git_state(tmp_path) == {"commit": head, "dirty": "unknown"}


def test_git_state_not_a_repository(tmp_path):
    assert git_state(tmp_path / "nowhere") == {"commit": "unknown", "dirty": "unknown"}


def test_git_state_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OVERLEARNING_GIT_COMMIT", "abc123")
    monkeypatch.setenv("OVERLEARNING_GIT_DIRTY", "0")
    assert git_state(tmp_path) == {"commit": "abc123", "dirty": False}


def test_container_digest_from_file_then_from_sidecar(tmp_path, monkeypatch):
    image = tmp_path / "overlearning-gpu.sif"
    image.write_bytes(b"not really a SIF, but bytes to hash")
    monkeypatch.setenv("APPTAINER_CONTAINER", str(image))
    expected = "sha256:" + hashlib.sha256(image.read_bytes()).hexdigest()
    provenance.file_sha256.cache_clear()
    assert provenance.container_state() == {"image": str(image), "digest": expected}
    # The first job leaves the digest beside the image, in sha256sum's format.
    sidecar = tmp_path / "overlearning-gpu.sif.sha256"
    assert sidecar.read_text() == f"{expected[7:]}  overlearning-gpu.sif\n"
    # A sidecar at least as new as the image is trusted (the build script writes one) ...
    sidecar.write_text("deadbeef  overlearning-gpu.sif\n")
    assert provenance.container_state()["digest"] == "sha256:deadbeef"
    # ... one older than the image belongs to a replaced image and is recomputed.
    image.write_bytes(b"a rebuilt image")
    old = image.stat().st_mtime - 60
    os.utime(sidecar, (old, old))
    provenance.file_sha256.cache_clear()
    assert provenance.container_state()["digest"] == (
        "sha256:" + hashlib.sha256(b"a rebuilt image").hexdigest())


def test_container_unknown_digest_when_image_not_visible(monkeypatch):
    monkeypatch.setenv("SINGULARITY_CONTAINER", "/not/mounted/here.sif")
    state = provenance.container_state()
    assert (state["image"], state["digest"]) == ("/not/mounted/here.sif", "unknown")


def test_record_is_json_serialisable_and_overwrites(tmp_path):
    target = tmp_path / "tables" / "main.csv"
    first = write_provenance(target, CONFIG)
    second = write_provenance(target, {**CONFIG, "seed": 1})
    assert first == second
    assert json.loads(second.read_text())["config_sha256"] == config_hash({**CONFIG, "seed": 1})
    json.dumps(provenance_record(CONFIG))


def test_import_does_not_import_torch():
    code = "import sys, overlearning.workflow.provenance; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.strip() == "False"


def test_config_hash_comes_from_the_workflow_environment(tmp_path, monkeypatch):
    # Jobs get no config (it would make every config edit a rerun trigger): the Snakefile
    # exports the hash of the resolved config, and the record takes it from there.
    monkeypatch.setenv(provenance.CONFIG_HASH_ENV, config_hash(CONFIG))
    record = json.loads(write_provenance(tmp_path / "t.csv").read_text())
    assert record["config_sha256"] == config_hash(CONFIG)
    monkeypatch.delenv(provenance.CONFIG_HASH_ENV)
    assert provenance_record()["config_sha256"] == "unknown"

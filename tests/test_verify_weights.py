"""scripts/verify_weights.py: a copied weights cache checked against its manifests on arrival."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "verify_weights.py"


def _bundle(root: Path) -> Path:
    """A cache folder as the model_weights jobs leave it: one folder per model, its files
    plus a manifest.json of their sha256."""
    cache = root / "weights"
    files = {"timm_clip": {"trunk.safetensors": b"\x00trunk bytes" * 100,
                           "build.json": b'{"kind": "timm"}'},
             "sam": {"model.safetensors": b"sam weights" * 50}}
    for key, named in files.items():
        (cache / key).mkdir(parents=True)
        for rel, data in named.items():
            (cache / key / rel).write_bytes(data)
        manifest = {rel: hashlib.sha256(data).hexdigest() for rel, data in named.items()}
        (cache / key / "manifest.json").write_text(json.dumps(manifest))
    return cache


def _run(cache: Path) -> subprocess.CompletedProcess:
    # From another directory and without PYTHONPATH, as on a login node.
    return subprocess.run([sys.executable, str(SCRIPT), str(cache)], cwd=cache.parent,
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def test_intact_bundle_passes(tmp_path: Path) -> None:
    cache = _bundle(tmp_path)
    (cache / "notes.txt").write_text("copied along")
    (cache / "sam" / "notes.txt").write_text("copied along")
    proc = _run(cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("\nok ") + proc.stdout.startswith("ok ") == 3
    assert "ok       sam/model.safetensors" in proc.stdout
    assert "unlisted notes.txt" in proc.stdout and "unlisted sam/notes.txt" in proc.stdout
    assert "all 3 files match manifest.json" in proc.stdout


def test_corrupt_and_missing_files_fail_and_are_named(tmp_path: Path) -> None:
    cache = _bundle(tmp_path)
    trunk = cache / "timm_clip" / "trunk.safetensors"
    data = bytearray(trunk.read_bytes())
    data[5] ^= 1  # one flipped bit, same size
    trunk.write_bytes(bytes(data))
    (cache / "sam" / "model.safetensors").unlink()
    proc = _run(cache)
    assert proc.returncode == 1
    bad = [line for line in proc.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad) == 2, proc.stdout
    assert any("trunk.safetensors" in line and "checksum" in line for line in bad)
    assert any("sam/model.safetensors" in line and "missing" in line for line in bad)
    assert "ok       timm_clip/build.json" in proc.stdout
    assert "2 of 3 files do not match" in proc.stderr


def test_no_manifest_at_all_is_one_line(tmp_path: Path) -> None:
    cache = _bundle(tmp_path)
    for key in ("sam", "timm_clip"):
        (cache / key / "manifest.json").unlink()
    proc = _run(cache)
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert "manifest.json" in line and "snakemake weights" in line


def test_unreadable_manifest_is_one_line(tmp_path: Path) -> None:
    cache = _bundle(tmp_path)
    (cache / "sam" / "manifest.json").write_text("{truncated")
    proc = _run(cache)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "sam/manifest.json" in line

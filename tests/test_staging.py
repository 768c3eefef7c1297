"""Node-local staging: a training job copies its crop packs to $TMPDIR and reads them there.

The real training program runs on tiny data with TMPDIR set; Python's audit hook (the
interpreter's own record of every file it opens, not a stand-in for anything) lists the
files the job opened. The job must read its crops from the staged copies, open the packs
on the shared path only to copy them and to read their member tables, never open a crop
file by itself, and leave nothing in TMPDIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from overlearning.core import staging
from overlearning.core.packs import write_pack
from tests.conftest import REPO
from tests.training_fixtures import CONFUSION, PERSON, TIMM_TINY, TRAINING, make_job

# Runs scripts/train.py as __main__ with an audit hook writing every opened path to a file.
_HOOKED = """
import runpy, sys
record = open(sys.argv[1], "w", buffering=1)
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        record.write(str(args[0]) + "\\n")
sys.addaudithook(hook)
sys.argv = sys.argv[2:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])  # as `python scripts/train.py` would
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _train(tmp_path: Path, env: dict[str, str], name: str) -> tuple[str, list[str]]:
    job = make_job(tmp_path)
    command = [sys.executable, "-c", _HOOKED, str(tmp_path / f"{name}.opened"),
               str(REPO / "scripts" / "train.py"), "--device", "cpu", "--rule", "train",
               "--setting", "test",
               "--params", json.dumps(CONFUSION),
               "--training", json.dumps({**TRAINING, "epochs": 2}),
               "--trunk", json.dumps(TIMM_TINY), "--cache", str(job.cache),
               "--train-dir", str(job.train_dir), "--valid-dir", str(job.valid_dir),
               "--person-category", str(PERSON), "--seed", "5", "--out", str(tmp_path / name),
               "--checkpoints", str(tmp_path / f"{name}-ckpt"), "--tuned"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", **env}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    opened = (tmp_path / f"{name}.opened").read_text().splitlines()
    return done.stderr, opened


def test_training_reads_its_packs_from_tmpdir(tmp_path: Path) -> None:
    node = tmp_path / "node-local"
    node.mkdir()
    log, opened = _train(tmp_path, {"TMPDIR": str(node)}, "staged")
    staged = [line for line in log.splitlines() if line.startswith("staging: copied")]
    assert len(staged) == 1 and f"to {node.resolve()}" in staged[0], log[-2000:]
    assert "reading from there" in staged[0]
    packs = {str(tmp_path / "data" / split / "foregroundImages_cropped.zip")
             for split in ("train", "valid")}
    local = [p for p in opened if p.startswith(str(node.resolve())) and p.endswith(".zip")]
    shared = [p for p in opened if p in packs]
    # Read from the copies (copy, check, then the loaders); the shared packs only for the
    # copy and the member tables, a few opens each, however many crops there are.
    assert {Path(p).name for p in local} == {"0-foregroundImages_cropped.zip",
                                            "1-foregroundImages_cropped.zip"}
    assert 1 <= len(shared) <= 4 * len(packs), shared
    # Under the data folder the job opened the packs and the crop indexes, nothing else:
    # no crop as its own file.
    data = str(tmp_path / "data")
    assert {Path(p).name for p in opened if p.startswith(data)} == {
        "foregroundImages_cropped.zip", "fg_instances_cropped.json"}
    assert list(node.iterdir()) == []  # cleaned up
    assert any(line.startswith("staging: removed") for line in log.splitlines())


def test_without_room_the_job_reads_in_place_and_says_so(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A margin larger than any disk: the job must not copy, and its log says why.
    monkeypatch.setattr(staging, "MARGIN_BYTES", 1 << 62)
    job = make_job(tmp_path)
    node = tmp_path / "node-local"
    node.mkdir()
    monkeypatch.setenv("TMPDIR", str(node))
    lines: list[str] = []
    packs = [job.train_dir / "foregroundImages_cropped.zip", job.valid_dir / "foregroundImages_cropped.zip"]
    with staging.staged_packs(packs, log=lines.append) as paths:
        assert paths == packs
    assert len(lines) == 1 and "reading 2 pack(s) in place (not enough room in" in lines[0]
    assert list(node.iterdir()) == []


def test_staging_can_be_switched_off_and_cleans_up_after_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with write_pack(tmp_path / "a.zip") as pack:
        pack.add("v/1_1.jpg", b"x")
    monkeypatch.setenv(staging.STAGE_ENV, "off")
    lines: list[str] = []
    with staging.staged_packs([tmp_path / "a.zip"], log=lines.append) as paths:
        assert paths == [tmp_path / "a.zip"]
    assert "in place (OVERLEARNING_STAGE_DIR=off)" in lines[0]
    node = tmp_path / "node"
    monkeypatch.setenv(staging.STAGE_ENV, str(node))
    with pytest.raises(RuntimeError, match="epoch failed"), \
            staging.staged_packs([tmp_path / "a.zip"], log=lines.append) as paths:
        assert paths[0].parent.parent == node.resolve()
        assert paths[0].read_bytes() == (tmp_path / "a.zip").read_bytes()
        raise RuntimeError("epoch failed")
    assert list(node.iterdir()) == []


def test_a_corrupt_copy_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pack whose member fails its CRC (a bad disk): the copy fails its check, the job
    # reads in place and the reader then names the damaged member.
    payload = bytes(range(256)) * 8
    with write_pack(tmp_path / "a.zip") as pack:
        pack.add("v/1_1.jpg", payload)
    data = bytearray((tmp_path / "a.zip").read_bytes())
    data[data.index(payload) + 5] ^= 0xFF
    (tmp_path / "a.zip").write_bytes(bytes(data))
    monkeypatch.setenv(staging.STAGE_ENV, str(tmp_path / "node"))
    lines: list[str] = []
    with staging.staged_packs([tmp_path / "a.zip"], log=lines.append) as paths:
        assert paths == [tmp_path / "a.zip"]
    assert "copy to" in lines[0] and "CRC-32 differs" in lines[0]
    assert list((tmp_path / "node").iterdir()) == []

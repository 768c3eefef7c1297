"""Errors at scale: input however deep, long-named or large, and a disk that fills up.

Each case ends a real script (or the library reader it calls) in the project's one line
naming the file and the entry, with nothing left behind that a rerun would take for a
finished output: a JSON nested beyond Python's recursion limit (the parser) and a few
hundred levels deep (jsonschema's validator), a frame whose crop name would exceed the
filesystem's 255-byte name limit, an archive entry with such a name, and a full disk
(a real 2 MB tmpfs, mounted for the test) under the person-set and JSON writers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from overlearning.core.atomic import read_json, write_json
from overlearning.core.errors import WorkflowInputError, WorkflowOutputError
from overlearning.core.validate import check_schema
from overlearning.data.archives import ArchiveSource, extract_archives
from overlearning.data.crops import make_crops
from overlearning.data.vis_frames import convert_video_annotations
from tests.test_prepare_fixtures import build_market, build_vis

REPO = Path(__file__).resolve().parent.parent


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The script failed, printed no traceback, and its last line is the project's error."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                  or ".tmp-" in p.name or ".partial-" in p.name)


# --- deep JSON -----------------------------------------------------------------------------


def test_json_nested_beyond_the_recursion_limit_names_file_and_position(tmp_path: Path) -> None:
    depth = 5 * sys.getrecursionlimit()
    path = tmp_path / "instances.json"
    prefix = '{"videos": [], "annotations": '
    path.write_text(prefix + "[" * depth + "]" * depth + "}")
    with pytest.raises(WorkflowInputError) as caught:
        read_json(path)
    # The opening brace is level 1, so the 100th "[" is the first beyond 100 levels.
    column = len(prefix) + 100
    assert caught.value.where == str(path)
    assert f"line 1, column {column}" in caught.value.problem
    assert "nesting too deep" in caught.value.problem


def test_deep_json_stops_the_frame_script_in_one_line(tmp_path: Path) -> None:
    dataset = tmp_path / "vis"
    data = build_vis(dataset, n_videos=2, frames=2)
    # Just shallow enough for the JSON parser: the reader's checks still end in one line.
    nested: object = [1]
    for _ in range(950):
        nested = [nested]
    data["annotations"][0]["segmentations"][0] = {"size": [12, 16], "counts": nested}
    source = dataset / "instances.json"
    source.write_text(json.dumps(data))
    out = tmp_path / "out"
    result = run_script("vis_frames.py", "--annotations", str(source), "--out",
                        str(out / "frames.json"), "--objects-out", str(out / "objects.json"))
    line = one_error_line(result)
    assert line.startswith(f"WorkflowInputError: {source}: $.annotations[0].segmentations[0]")
    assert not out.exists() or leftovers(out) == []


def test_schema_validation_that_recurses_past_the_limit_names_the_deep_entry(
        tmp_path: Path) -> None:
    # A schema that follows the data down (a tree) recurses several frames per level in
    # jsonschema: a few hundred levels that the parser still reads are too deep for it.
    tree = {"$defs": {"node": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "type": "object", "properties": {"tree": {"$ref": "#/$defs/node"}}}
    path = tmp_path / "tree.json"
    path.write_text('{"tree": ' + "[" * 400 + "]" * 400 + "}")
    with pytest.raises(WorkflowInputError) as caught:
        check_schema(read_json(path), tree, path)
    # The path of the first list 100 levels below the top: "tree" then 99 [0]s.
    assert caught.value.problem.startswith("$.tree" + "[0]" * 99 + ": expected JSON nested a "
                                           "few levels deep, found nesting too deep to check")


def test_deep_json_in_the_video_file_fails_in_the_reader_too(tmp_path: Path) -> None:
    source = tmp_path / "annotations.json"
    source.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(WorkflowInputError) as caught:
        convert_video_annotations(source, tmp_path / "frames.json")
    assert caught.value.where == str(source)
    assert not (tmp_path / "frames.json").exists()


# --- names longer than the filesystem allows -----------------------------------------------


def test_frame_whose_crop_name_exceeds_the_name_limit_is_refused_before_any_write(
        tmp_path: Path) -> None:
    dataset = tmp_path / "vis"
    data = build_vis(dataset, n_videos=2, frames=2)
    # A 250-byte frame stem is a valid file name (254 bytes with ".png"); its crop,
    # "<stem>_<object id>.jpg", is not.
    long_stem = "f" * 250
    old = data["videos"][0]["file_names"][0]
    new = f"{old.split('/')[0]}/{long_stem}.png"
    (dataset / "JPEGImages" / old).rename(dataset / "JPEGImages" / new)
    data["videos"][0]["file_names"][0] = new
    (dataset / "instances.json").write_text(json.dumps(data))
    frames = tmp_path / "frames.json"
    convert_video_annotations(dataset / "instances.json", frames)
    out = tmp_path / "split"
    with pytest.raises(WorkflowInputError) as caught:
        make_crops(frames, dataset / "JPEGImages", out)
    assert caught.value.where == str(frames)
    assert caught.value.problem.startswith("$.images[0].file_name: expected file names of at "
                                           "most 255 bytes")
    assert "bytes)" in caught.value.problem
    assert not out.exists() or leftovers(out) == []


def test_archive_entry_longer_than_the_name_limit_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/JPEGImages/v1/00000.jpg", b"x")
        zf.writestr("train/JPEGImages/v1/" + "n" * 300 + ".jpg", b"x")
    out = tmp_path / "raw"
    with pytest.raises(WorkflowInputError) as caught:
        extract_archives([ArchiveSource(archive)], out)
    assert caught.value.where == str(archive)
    assert "at most 255 bytes" in caught.value.problem
    assert not out.exists()
    assert leftovers(tmp_path) == ["train.zip"]


# --- a full disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted for the test (needs root: mount), unmounted afterwards."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command: a full disk cannot be made here")
    where = tmp_path / f"disk-{uuid.uuid4().hex[:8]}"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip()}): needs root "
                    "or CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, keep: int) -> None:
    """Leave ``keep`` bytes free on ``disk``."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    (disk / "ballast").write_bytes(b"\0" * max(0, free - keep))


def test_full_disk_stops_the_person_set_in_one_line_and_leaves_nothing(
        tmp_path: Path, small_disk: Path) -> None:
    images = tmp_path / "market"
    build_market(images)
    fill(small_disk, keep=4096)  # room for a file or two, not for a person set
    out = small_disk / "market1501"
    result = run_script("person_set.py", "--images", str(images), "--masks", str(images),
                        "--out", str(out), "--naming", "market1501")
    line = one_error_line(result)
    assert line.startswith(f"WorkflowOutputError: {out}/")
    assert "cannot write: no space left on the device" in line
    # Named by its place in the output, not in the temporary it was built in; that output
    # is absent, no temporary is left, and the job's outputs are not all there (a rerun
    # redoes the job).
    assert ".tmp-" not in line
    named = Path(line.split(": ", 2)[1])
    assert not named.exists()
    assert not [p for p in small_disk.rglob("*") if ".tmp-" in p.name]
    outputs = [p for p in out.iterdir()] if out.exists() else []
    assert len(outputs) < 2, outputs
    (small_disk / "ballast").unlink()
    rerun = run_script("person_set.py", "--images", str(images), "--masks", str(images),
                       "--out", str(out), "--naming", "market1501")
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name.split(".")[0] for p in out.iterdir()) == [
        "foregroundImages_cropped", "foreground_query"]


def test_full_disk_under_a_json_write_names_the_file_and_keeps_the_old_one(
        small_disk: Path) -> None:
    path = small_disk / "metrics.json"
    write_json(path, {"old": True})
    fill(small_disk, keep=4096)
    with pytest.raises(WorkflowOutputError) as caught:
        write_json(path, {"values": list(range(100_000))})
    assert caught.value.where == str(path)
    assert "no space left on the device" in caught.value.problem
    assert read_json(path) == {"old": True}
    assert leftovers(small_disk) == ["ballast", "metrics.json"]

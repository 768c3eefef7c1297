"""Packed image sets (overlearning/core/packs.py): one uncompressed ZIP per image set."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from overlearning.core import image_io, packs
from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import read_rgb, write_image
from overlearning.core.packs import (
    FIXED_TIME,
    FolderImages,
    export_pack,
    open_pack,
    pack_of_files,
    verify_pack,
    write_pack,
)


def _image_folder(root: Path, count: int = 6) -> dict[str, Path]:
    """A folder of JPEG and PNG images in sub-folders, like a crop folder."""
    rng = np.random.default_rng(0)
    files = {}
    for i in range(count):
        name = f"v{i % 2}/{i:05d}_{i + 7}.{'png' if i == 3 else 'jpg'}"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / name, rng.integers(0, 255, (5 + i, 4 + i, 3), dtype=np.uint8))
        files[name] = root / name
    return files


def test_members_hold_the_files_bytes_under_their_relative_names(tmp_path: Path) -> None:
    files = _image_folder(tmp_path / "folder")
    pack = tmp_path / "set.zip"
    assert pack_of_files(pack, files) == len(files)
    reader = open_pack(pack)
    assert reader.names() == sorted(files)
    for name, path in files.items():
        assert reader.read_bytes(name) == path.read_bytes()
        assert np.array_equal(np.asarray(reader.open_image(name).convert("RGB")), read_rgb(path))
        assert np.array_equal(reader.read_rgb(name), read_rgb(path))
    # A standard ZIP: stored members, fixed timestamps, readable by the standard library.
    with zipfile.ZipFile(pack) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert {i.compress_type for i in infos} == {zipfile.ZIP_STORED}
        assert {i.date_time for i in infos} == {FIXED_TIME}
        assert archive.read("v1/00003_10.png") == files["v1/00003_10.png"].read_bytes()


def test_same_members_give_the_same_pack_bytes(tmp_path: Path) -> None:
    files = _image_folder(tmp_path / "folder")
    pack_of_files(tmp_path / "a.zip", files)
    os.utime(files["v0/00000_7.jpg"], (1, 1))  # file times never reach the pack
    pack_of_files(tmp_path / "b.zip", files)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_export_gives_back_the_folder(tmp_path: Path) -> None:
    files = _image_folder(tmp_path / "folder")
    pack_of_files(tmp_path / "set.zip", files)
    assert export_pack(tmp_path / "set.zip", tmp_path / "out") == len(files)
    out = sorted(p.relative_to(tmp_path / "out").as_posix()
                 for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert out == sorted(files)
    assert all((tmp_path / "out" / n).read_bytes() == p.read_bytes() for n, p in files.items())


def test_unzip_exports_a_pack(tmp_path: Path) -> None:
    files = _image_folder(tmp_path / "folder")
    pack_of_files(tmp_path / "set.zip", files)
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(tmp_path / "set.zip"),
                    str(tmp_path / "unzipped")], check=True)
    assert all((tmp_path / "unzipped" / n).read_bytes() == p.read_bytes()
               for n, p in files.items())


def _read_in_child(reader_bytes: bytes, name: str, queue: multiprocessing.Queue) -> None:
    reader = pickle.loads(reader_bytes)
    queue.put((reader.read_bytes(name), reader._pid == os.getpid()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_pickles_and_reopens_in_each_process(tmp_path: Path, method: str) -> None:
    files = _image_folder(tmp_path / "folder")
    pack_of_files(tmp_path / "set.zip", files)
    reader = open_pack(tmp_path / "set.zip")
    reader.read_bytes("v0/00000_7.jpg")  # the parent holds an open descriptor
    state = pickle.dumps(reader)
    assert pickle.loads(state)._fd is None
    context = multiprocessing.get_context(method)
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(state, "v1/00005_12.jpg", queue))
    child.start()
    data, own_handle = queue.get(timeout=60)
    child.join(60)
    assert data == files["v1/00005_12.jpg"].read_bytes()
    assert own_handle
    # The parent still reads through its own descriptor.
    assert reader.read_bytes("v1/00005_12.jpg") == data


def test_a_failed_write_leaves_no_pack_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "set.zip"
    with pytest.raises(RuntimeError, match="half-way"), write_pack(target) as writer:
        writer.add("a.jpg", b"one")
        raise RuntimeError("stopped half-way")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_stale_temporary_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".set.zip.tmp-999999999"
    stale.write_bytes(b"half")
    with write_pack(tmp_path / "set.zip") as writer:
        writer.add("a.jpg", b"one")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.zip"]


@pytest.mark.parametrize("name", ["../x.jpg", "/abs.jpg", "a//b.jpg", "./a.jpg", ""])
def test_writer_refuses_names_that_are_not_plain_relative_paths(tmp_path: Path,
                                                                name: str) -> None:
    with pytest.raises(WorkflowInputError, match="set.zip"), \
            write_pack(tmp_path / "set.zip") as writer:
        writer.add(name, b"x")
    assert not (tmp_path / "set.zip").exists()


def test_writer_refuses_a_name_twice(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError, match="'a.jpg' added twice"), \
            write_pack(tmp_path / "set.zip") as writer:
        writer.add("a.jpg", b"x")
        writer.add("a.jpg", b"y")


@pytest.mark.parametrize("name", ["../evil.jpg", "/etc/evil.jpg", "a/../../evil.jpg"])
def test_reader_refuses_archives_with_unsafe_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good.jpg", b"x")
        archive.writestr(name, b"y")
    with pytest.raises(WorkflowInputError, match=r"evil\.zip: member 1"):
        open_pack(path).names()


def test_reader_refuses_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), \
            zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.jpg", b"x")
        archive.writestr("a.jpg", b"y")
    with pytest.raises(WorkflowInputError, match="appears twice"):
        open_pack(path).names()


def test_missing_member_and_missing_pack_name_the_pack(tmp_path: Path) -> None:
    with write_pack(tmp_path / "set.zip") as writer:
        writer.add("a.jpg", b"x")
    with pytest.raises(WorkflowInputError, match=r"set\.zip: member 'b.jpg' not found"):
        open_pack(tmp_path / "set.zip").read_bytes("b.jpg")
    with pytest.raises(WorkflowInputError, match=r"none\.zip: pack file not found"):
        open_pack(tmp_path / "none.zip").names()
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(WorkflowInputError, match=r"junk\.zip: not a readable ZIP"):
        open_pack(tmp_path / "junk.zip").names()


def test_verify_finds_a_flipped_byte(tmp_path: Path) -> None:
    files = _image_folder(tmp_path / "folder")
    pack = tmp_path / "set.zip"
    pack_of_files(pack, files)
    assert verify_pack(pack) == {"members": len(files),
                                 "bytes": sum(p.stat().st_size for p in files.values())}
    data = bytearray(pack.read_bytes())
    target = files["v1/00005_12.jpg"].read_bytes()
    offset = bytes(data).index(target) + len(target) // 2
    data[offset] ^= 0xFF
    pack.write_bytes(bytes(data))
    with pytest.raises(WorkflowInputError, match=r"set\.zip: member 'v1/00005_12.jpg': size "
                                                 r"or CRC-32 differs"):
        verify_pack(pack)


def test_overlay_reads_changed_members_from_the_delta(tmp_path: Path) -> None:
    with write_pack(tmp_path / "base.zip") as writer:
        for name in ("a.jpg", "b.jpg", "c.jpg"):
            writer.add(name, name.encode())
    with write_pack(tmp_path / "delta.zip") as writer:
        writer.add("b.jpg", b"changed")
    overlay = open_pack(tmp_path / "delta.zip", base=tmp_path / "base.zip")
    assert overlay.names() == ["a.jpg", "b.jpg", "c.jpg"]
    assert [overlay.read_bytes(n) for n in overlay.names()] == [b"a.jpg", b"changed", b"c.jpg"]
    assert overlay.where("b.jpg").startswith(str(tmp_path / "delta.zip"))
    assert overlay.where("a.jpg").startswith(str(tmp_path / "base.zip"))
    again = pickle.loads(pickle.dumps(overlay))
    assert again.read_bytes("b.jpg") == b"changed" and again.read_bytes("c.jpg") == b"c.jpg"


def test_reads_deflated_members_of_any_zip(tmp_path: Path) -> None:
    path = tmp_path / "download.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/JPEGImages/v/00000.txt", b"abc" * 1000)
        archive.writestr("train/JPEGImages/", b"")  # folder entries are not members
    reader = open_pack(path)
    assert reader.names() == ["train/JPEGImages/v/00000.txt"]
    assert reader.read_bytes("train/JPEGImages/v/00000.txt") == b"abc" * 1000


def test_more_than_65535_members_use_zip64(tmp_path: Path) -> None:
    count = 70_000
    with write_pack(tmp_path / "big.zip") as writer:
        for i in range(count):
            writer.add(f"{i:06d}.jpg", i.to_bytes(4, "little"))
    reader = open_pack(tmp_path / "big.zip")
    assert len(reader.names()) == count
    assert reader.read_bytes("069999.jpg") == (69999).to_bytes(4, "little")
    with zipfile.ZipFile(tmp_path / "big.zip") as archive:
        assert len(archive.infolist()) == count
    if shutil.which("unzip"):
        listing = subprocess.run(["unzip", "-l", str(tmp_path / "big.zip")], capture_output=True,
                                 text=True, check=True).stdout
        assert f"{count} files" in listing.splitlines()[-1]


def test_corrupt_image_member_names_pack_and_member(tmp_path: Path) -> None:
    with write_pack(tmp_path / "set.zip") as writer:
        writer.add("v/bad.jpg", b"\xff\xd8 not really a jpeg")
    with pytest.raises(WorkflowInputError, match=r"set\.zip:v/bad\.jpg: corrupt"):
        open_pack(tmp_path / "set.zip").open_image("v/bad.jpg")


def test_image_members_keep_the_pixel_limit(tmp_path: Path) -> None:
    buffer = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(buffer)
    with write_pack(tmp_path / "set.zip") as writer:
        writer.add("big.png", buffer.read_bytes())
    old = image_io.max_image_pixels()
    image_io.set_max_image_pixels(1000)
    try:
        with pytest.raises(WorkflowInputError, match=r"set\.zip:big\.png: header"):
            open_pack(tmp_path / "set.zip").open_image("big.png")
    finally:
        image_io.set_max_image_pixels(old)


def test_export_script_writes_an_overlay_as_plain_files(tmp_path: Path, repo: Path) -> None:
    with write_pack(tmp_path / "base.zip") as writer:
        writer.add("v/a.jpg", b"a")
        writer.add("v/b.jpg", b"b")
    with write_pack(tmp_path / "delta.zip") as writer:
        writer.add("v/b.jpg", b"B")
    subprocess.run([sys.executable, str(repo / "scripts/export_pack.py"), "--pack",
                    str(tmp_path / "delta.zip"), "--base", str(tmp_path / "base.zip"),
                    "--out", str(tmp_path / "out")], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=str(repo)))
    assert (tmp_path / "out/v/a.jpg").read_bytes() == b"a"
    assert (tmp_path / "out/v/b.jpg").read_bytes() == b"B"


@pytest.mark.parametrize("limit", [None, 100])
def test_unzip_and_zipfile_read_packs_with_zip64_offsets(tmp_path: Path, limit: int | None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A 4 GiB pack is too big for a test: lowering the limit makes every member past byte
    # 100 take the ZIP64 offset record, which is the path a real 4 GiB pack takes.
    if limit is not None:
        monkeypatch.setattr(packs, "ZIP64_LIMIT", limit)
    files = _image_folder(tmp_path / "folder", count=8)
    pack_of_files(tmp_path / "set.zip", files)
    with zipfile.ZipFile(tmp_path / "set.zip") as archive:
        assert archive.testzip() is None
        offsets = [i.header_offset for i in archive.infolist()]
        assert all(archive.read(n) == p.read_bytes() for n, p in files.items())
    assert offsets == sorted(offsets) and offsets[-1] > 100
    reader = open_pack(tmp_path / "set.zip")
    assert all(reader.read_bytes(n) == p.read_bytes() for n, p in files.items())
    if shutil.which("unzip"):
        test = subprocess.run(["unzip", "-t", str(tmp_path / "set.zip")], capture_output=True,
                              text=True)
        assert test.returncode == 0 and "No errors detected" in test.stdout, test.stdout
        subprocess.run(["unzip", "-q", str(tmp_path / "set.zip"), "-d", str(tmp_path / "u")],
                       check=True)
        assert all((tmp_path / "u" / n).read_bytes() == p.read_bytes() for n, p in files.items())
        assert oct((tmp_path / "u" / "v0/00000_7.jpg").stat().st_mode & 0o777) == "0o644"


def test_folder_images_refuse_links_leaving_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    (root / "v").mkdir(parents=True)
    (root / "v/a.jpg").write_bytes(b"inside")
    (tmp_path / "secret.jpg").write_bytes(b"outside")
    (root / "v/inner.jpg").symlink_to(root / "v/a.jpg")
    (root / "v/outer.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "w").symlink_to(tmp_path)
    images = FolderImages(root)
    assert images.read_bytes("v/a.jpg") == b"inside"
    assert images.read_bytes("v/inner.jpg") == b"inside"  # a link that stays inside is fine
    for name in ("v/outer.jpg", "w/secret.jpg"):
        with pytest.raises(WorkflowInputError, match="outside"):
            images.read_bytes(name)
        with pytest.raises(WorkflowInputError, match="outside"):
            images.resolve(name, "instances.json", "$.images[0].file_name")
    for name in ("../secret.jpg", "/etc/passwd"):
        with pytest.raises(WorkflowInputError, match="refused"):
            images.read_bytes(name)
    with pytest.raises(WorkflowInputError, match="image file not found"):
        images.read_bytes("v/none.jpg")
    # A file replaced by a link after the first read is refused at the next one.
    (root / "v/a.jpg").unlink()
    (root / "v/a.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(WorkflowInputError, match="outside"):
        images.read_bytes("v/a.jpg")

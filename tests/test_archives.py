"""Checksums and safe extraction of the raw downloads, on real archives written to disk."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.data.archives import (
    ArchiveSource,
    archive_kind,
    extract_archives,
    file_digests,
    safe_member_path,
)
from scripts.extract_dataset import main as extract_main


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None,
             modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
        for name, mode in (modes or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = mode << 16
            zf.writestr(info, b"")
    return path


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """``members``: (name, kind, data or link target); kind in file/dir/sym/hard/chr/fifo."""
    mode = {".gz": "w:gz", ".bz2": "w:bz2", ".xz": "w:xz"}.get(path.suffix, "w")
    kinds = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
             "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
                continue
            info.type = kinds[kind]
            if kind in ("sym", "hard"):
                assert isinstance(payload, str)
                info.linkname = payload
            tf.addfile(info)
    return path


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def extract(tmp_path: Path, *archives: Path) -> Path:
    out = tmp_path / "data" / "raw" / "ds"
    extract_archives([ArchiveSource(a) for a in archives], out)
    return out


def refused(tmp_path: Path, archive: Path, match: str) -> None:
    """The archive is refused naming it, and nothing is left beside the output."""
    out = tmp_path / "data" / "raw" / "ds"
    with pytest.raises(WorkflowInputError, match=match) as info:
        extract_archives([ArchiveSource(archive)], out)
    assert info.value.where == str(archive)
    assert leftovers(out.parent) == []
    assert not (tmp_path / "data" / "raw" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


# ---- what a good download gives --------------------------------------------------------


def test_zip_tar_and_plain_file_go_into_one_folder(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "train.zip", {"train/a/00000.jpg": b"jpg", "train/b.txt": b"b"})
    t = make_tar(tmp_path / "masks.tar.gz", [("masks", "dir", b""), ("masks/m.png", "file", b"png")])
    j = tmp_path / "annotations_train.json"
    j.write_text('{"videos": []}')
    out = extract(tmp_path, z, t, j)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["annotations_train.json", "masks/m.png", "train/a/00000.jpg", "train/b.txt"]
    assert (out / "train/a/00000.jpg").read_bytes() == b"jpg"
    assert (out / "annotations_train.json").read_text() == '{"videos": []}'
    assert leftovers(out.parent) == ["ds"]


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"])
def test_every_tar_compression_extracts(tmp_path: Path, suffix: str) -> None:
    name = tmp_path / f"a{suffix}"
    mode = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2",
            ".tar.xz": "w:xz"}[suffix]
    with tarfile.open(name, mode) as tf:
        info = tarfile.TarInfo("x/y.bin")
        data = os.urandom(3000)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    out = extract(tmp_path, name)
    assert (out / "x/y.bin").read_bytes() == data


def test_links_inside_the_output_are_kept(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "a.tar", [("d/f.txt", "file", b"hi"), ("d/link", "sym", "f.txt"),
                                      ("e/up", "sym", "../d/f.txt"), ("d/hard", "hard", "d/f.txt")])
    out = extract(tmp_path, t)
    assert (out / "d/link").is_symlink() and (out / "d/link").read_bytes() == b"hi"
    assert (out / "e/up").read_bytes() == b"hi"
    assert not (out / "d/hard").is_symlink() and (out / "d/hard").read_bytes() == b"hi"
    z = make_zip(tmp_path / "b.zip", {"d/f.txt": b"zz"}, links={"d/l": "f.txt"})
    out = extract(tmp_path, z)
    assert os.readlink(out / "d/l") == "f.txt" and (out / "d/l").read_bytes() == b"zz"


def test_existing_output_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "data" / "raw" / "ds"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("old")
    extract(tmp_path, make_zip(tmp_path / "a.zip", {"new.txt": b"new"}))
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert leftovers(out.parent) == ["ds"]


def test_failure_keeps_a_previous_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "data" / "raw" / "ds"
    out.mkdir(parents=True)
    (out / "kept.txt").write_text("old")
    bad = make_zip(tmp_path / "bad.zip", {"../evil.txt": b"x"})
    with pytest.raises(WorkflowInputError):
        extract_archives([ArchiveSource(bad)], out)
    assert leftovers(out.parent) == ["ds"]
    assert (out / "kept.txt").read_text() == "old"


def test_later_archive_wins_on_a_name_clash(tmp_path: Path) -> None:
    a = make_zip(tmp_path / "a.zip", {"x/readme.txt": b"first"})
    b = make_zip(tmp_path / "b.zip", {"x/readme.txt": b"second"})
    out = tmp_path / "out"
    reports = extract_archives([ArchiveSource(a), ArchiveSource(b)], out)
    assert (out / "x/readme.txt").read_bytes() == b"second"
    assert reports[1].replaced == ["x/readme.txt"]


# ---- zip-slip and friends --------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt",
                                  "..\\evil.txt", "C:/evil.txt", "C:\\evil.txt"])
def test_zip_slip_names_are_refused(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "slip.zip", {"fine.txt": b"ok", name: b"evil"})
    refused(tmp_path, archive, r"absolute path refused|'\.\.' in path refused")


@pytest.mark.parametrize("name", ["../evil.txt", "/evil.txt", "a/../../evil.txt"])
def test_tar_slip_names_are_refused(tmp_path: Path, name: str) -> None:
    archive = make_tar(tmp_path / "slip.tar", [("fine.txt", "file", b"ok"), (name, "file", b"x")])
    refused(tmp_path, archive, "refused")


@pytest.mark.parametrize("target", ["../../evil.txt", "/etc/passwd", "a/../../.."])
def test_zip_symlink_entries_pointing_outside_are_refused(tmp_path: Path, target: str) -> None:
    archive = make_zip(tmp_path / "link.zip", {"fine.txt": b"ok"}, links={"d/link": target})
    refused(tmp_path, archive, "link target .* (refused|outside)")


@pytest.mark.parametrize("members", [
    [("link", "sym", "../../evil.txt")],
    [("link", "sym", "/etc/passwd")],
    [("hard", "hard", "../evil.txt")],
    [("hard", "hard", "/etc/passwd")],
    # A link whose text looks harmless but resolves outside through another link.
    [("y", "sym", "."), ("x", "sym", "y/..")],
    # Inside when made (y did not exist yet), outside once y appears: a file written
    # through it would land beside the output.
    [("x", "sym", "y/.."), ("y", "sym", "."), ("x/evil.txt", "file", b"x")],
])
def test_tar_links_pointing_outside_are_refused(tmp_path: Path, members: list) -> None:
    archive = make_tar(tmp_path / "link.tar", [("fine.txt", "file", b"ok"), *members])
    refused(tmp_path, archive, "refused|outside|leaves the output")


def test_a_later_archive_cannot_redirect_an_earlier_link_outside(tmp_path: Path) -> None:
    first = make_tar(tmp_path / "first.tar", [("x", "sym", "y/..")])
    second = make_tar(tmp_path / "second.tar", [("y", "sym", ".")])
    out = tmp_path / "data" / "raw" / "ds"
    with pytest.raises(WorkflowInputError, match="link resolves outside the output"):
        extract_archives([ArchiveSource(first), ArchiveSource(second)], out)
    assert leftovers(out.parent) == []


@pytest.mark.parametrize("kind", ["chr", "fifo"])
def test_tar_device_files_are_refused(tmp_path: Path, kind: str) -> None:
    archive = make_tar(tmp_path / "dev.tar", [("fine.txt", "file", b"ok"), ("dev", kind, b"")])
    refused(tmp_path, archive, "device or special file refused")


def test_zip_device_entries_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "dev.zip", {"fine.txt": b"ok"},
                       modes={"dev": stat.S_IFCHR | 0o644})
    refused(tmp_path, archive, "device or special file refused")


def test_member_path_normalisation() -> None:
    assert str(safe_member_path("a.zip", "./train//x/./y.jpg")) == "train/x/y.jpg"
    assert safe_member_path("a.zip", "./") is None
    assert str(safe_member_path("a.zip", "win\\style\\f.jpg")) == "win/style/f.jpg"


# ---- truncated, corrupt, wrong checksum --------------------------------------------------


def _big_zip(path: Path) -> Path:
    return make_zip(path, {f"train/{i:03d}.bin": os.urandom(4000) for i in range(20)})


def test_truncated_zip_is_refused(tmp_path: Path) -> None:
    archive = _big_zip(tmp_path / "cut.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    refused(tmp_path, archive, "truncated or corrupt archive")


def test_zip_with_damaged_data_is_refused(tmp_path: Path) -> None:
    archive = _big_zip(tmp_path / "flip.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[10]
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    for i in range(middle, middle + 16):
        data[i] ^= 0xFF
    archive.write_bytes(bytes(data))
    refused(tmp_path, archive, "truncated or corrupt archive")


# Cut in the middle of a member's data, and (uncompressed only: a compressed stream has
# no visible boundaries) exactly after a complete member, where tarfile alone sees no error.
@pytest.mark.parametrize(("suffix", "cut"), [(".tar", 4 * 2560 + 1000), (".tar", 4 * 2560),
                                             (".tar.gz", None), (".tar.bz2", None),
                                             (".tar.xz", None)])
def test_truncated_tar_is_refused(tmp_path: Path, suffix: str, cut: int | None) -> None:
    members = [(f"f{i}.bin", "file", os.urandom(2048)) for i in range(8)]
    archive = make_tar(tmp_path / f"cut{suffix}", members)
    data = archive.read_bytes()
    data = data[: cut if cut is not None else len(data) // 2]
    archive.write_bytes(data)
    refused(tmp_path, archive, "truncated or corrupt")


def test_garbage_with_an_archive_suffix_is_refused(tmp_path: Path) -> None:
    for name in ("junk.zip", "junk.tar.gz"):
        archive = tmp_path / name
        archive.write_bytes(b"<html>404 not found</html>" * 10)
        refused(tmp_path, archive, "truncated or corrupt archive")
        archive.unlink()


def test_checksums_are_streamed_and_checked(tmp_path: Path) -> None:
    archive = _big_zip(tmp_path / "ok.zip")
    raw = archive.read_bytes()
    sha, md5 = hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest()
    assert file_digests(archive, ["sha256", "md5"]) == {"sha256": sha, "md5": md5}
    out = tmp_path / "out"
    extract_archives([ArchiveSource(archive, sha256=sha.upper(), md5=md5)], out)
    assert len(list((out / "train").iterdir())) == 20


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_wrong_checksum_is_refused_with_no_output(tmp_path: Path, algorithm: str) -> None:
    archive = _big_zip(tmp_path / "ok.zip")
    wrong = "0" * (64 if algorithm == "sha256" else 32)
    out = tmp_path / "data" / "raw" / "ds"
    with pytest.raises(WorkflowInputError, match=f"{algorithm} mismatch: expected {wrong}") as e:
        extract_archives([ArchiveSource(archive, **{algorithm: wrong})], out)
    assert e.value.where == str(archive)
    assert leftovers(out.parent) == []


def test_second_archive_failing_leaves_nothing(tmp_path: Path) -> None:
    good = _big_zip(tmp_path / "good.zip")
    bad = _big_zip(tmp_path / "bad.zip")
    bad.write_bytes(bad.read_bytes()[:100])
    out = tmp_path / "data" / "raw" / "ds"
    with pytest.raises(WorkflowInputError, match="bad.zip"):
        extract_archives([ArchiveSource(good), ArchiveSource(bad)], out)
    assert leftovers(out.parent) == []


def test_missing_and_unsupported_archives_are_named(tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError, match="archive not found"):
        extract_archives([ArchiveSource(tmp_path / "nope.zip")], tmp_path / "out")
    rar = tmp_path / "x.rar"
    rar.write_bytes(b"Rar!")
    with pytest.raises(WorkflowInputError, match="unsupported archive format"):
        extract_archives([ArchiveSource(rar)], tmp_path / "out")
    assert archive_kind("a.TGZ") == "tar" and archive_kind("a.json") == "file"
    assert not (tmp_path / "out").exists()


# ---- the command-line program the rule calls ---------------------------------------------


def test_script_pairs_checksums_with_archives(tmp_path: Path) -> None:
    a = make_zip(tmp_path / "a.zip", {"a.txt": b"a"})
    b = tmp_path / "b.json"
    b.write_text("{}")
    sha_b = hashlib.sha256(b.read_bytes()).hexdigest()
    out = tmp_path / "out"
    assert extract_main(["--archives", str(a), str(b), "--sha256", "-", sha_b,
                         "--md5", "-", "-", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.json"]
    with pytest.raises(WorkflowInputError, match="sha256 mismatch"):
        extract_main(["--archives", str(a), str(b), "--sha256", sha_b, "-", "--out", str(out)])
    with pytest.raises(SystemExit):
        extract_main(["--archives", str(a), str(b), "--sha256", sha_b, "--out", str(out)])

"""Checksum verification and safe extraction of the raw dataset downloads.

A dataset comes as one or more official downloads (zip, tar in any common compression, or
a plain file such as OVIS's ``annotations_train.json``). When every download is a zip or a
plain file they are read in place (:func:`verify_in_place` checks them and writes the
manifest that ``overlearning.core.packs.open_images`` reads through): about 290k fewer
files at the paper's size. Otherwise all of them are unpacked into one directory. Archives from the internet are untrusted, so every entry is checked before
anything is written: absolute names, ``..`` components, links that leave the output,
device files and encrypted entries are refused. A truncated or corrupt archive, or one whose
checksum differs from the configured one, stops with a message naming it. Extraction goes
to a sibling temporary directory that is renamed into place only when everything
succeeded, so a failure never leaves a half-extracted dataset behind.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import shutil
import stat
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from overlearning.core.atomic import (
    remove_path,
    remove_stale_temporaries,
    temporary_name,
    terminate_as_exit,
)
from overlearning.core.atomic import write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import file_digests
from overlearning.core.packs import RAW_TREE_FORMAT, ArchiveTree
from overlearning.core.paths import check_name_length

CHUNK = 1 << 20
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")
# Formats we cannot unpack safely with the standard library: refuse rather than copy them.
UNSUPPORTED_SUFFIXES = (".rar", ".7z", ".gz", ".bz2", ".xz", ".zst", ".lz4")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveSource:
    """One configured download: its path and the checksums it must have (if given)."""

    path: Path
    sha256: str | None = None
    md5: str | None = None


@dataclass
class ExtractionReport:
    """What one archive contributed (for the rule's log)."""

    archive: str
    kind: str
    files: int = 0
    directories: int = 0
    links: int = 0
    replaced: list[str] = field(default_factory=list)


def archive_kind(path: Path | str) -> str:
    """``zip``, ``tar`` or ``file`` (copied as it is), from the file name."""
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(UNSUPPORTED_SUFFIXES):
        raise WorkflowInputError(path, "unsupported archive format (use zip or tar, or "
                                       "unpack it yourself and give datasets.<name>.directory)")
    return "file"


def verify_checksums(source: ArchiveSource) -> None:
    """Stop with the file's name when a configured sha256/md5 does not match."""
    expected = {name: value.lower() for name, value in
                (("sha256", source.sha256), ("md5", source.md5)) if value}
    if not expected:
        return
    actual = file_digests(source.path, expected)
    for name, value in expected.items():
        if actual[name] != value:
            raise WorkflowInputError(
                source.path, f"{name} mismatch: expected {value}, got {actual[name]} "
                             "(incomplete or corrupt download?)")


def safe_member_path(archive: Path | str, name: str) -> PurePosixPath | None:
    """The entry's relative path, or None for the archive root itself ("./").

    Refuses names that could write outside the output: absolute paths (also Windows drive
    and backslash forms, which some zip tools produce) and any ``..`` component.
    """
    if "\x00" in name:
        raise WorkflowInputError(archive, f"entry {name!r}: NUL byte in name refused")
    clean = name.replace("\\", "/")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise WorkflowInputError(archive, f"entry {name!r}: absolute path refused")
    parts = [part for part in clean.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise WorkflowInputError(archive, f"entry {name!r}: '..' in path refused")
    for part in parts:
        check_name_length(part, archive, f"entry {name[:60]!r}")
    return PurePosixPath(*parts) if parts else None


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Writer:
    """Writes checked entries below ``root``, never following a link out of it."""

    def __init__(self, root: Path, archive: Path, report: ExtractionReport) -> None:
        self.root = Path(os.path.realpath(root))
        self.archive = archive
        self.report = report
        self.links: list[Path] = []
        self.real_dirs: set[Path] = set()

    def _refuse(self, rel: PurePosixPath, problem: str) -> WorkflowInputError:
        return WorkflowInputError(self.archive, f"entry {str(rel)!r}: {problem}")

    def _directory(self, rel: PurePosixPath) -> Path:
        """Create the folders of ``rel`` one by one; a link on the way must stay inside."""
        current = self.root
        through_link = False
        for part in rel.parts:
            current = current / part
            if current in self.real_dirs:
                continue
            if current.is_symlink():
                through_link = True
                if not _inside(str(self.root), os.path.realpath(current)):
                    raise self._refuse(rel, "path goes through a link that leaves the output")
            elif not current.exists():
                current.mkdir()
            if not current.is_dir():
                raise self._refuse(rel, "a parent folder is a file")
            if not through_link:
                # A real folder stays one (nothing replaces a folder), so check it once.
                self.real_dirs.add(current)
        return current

    def _free(self, rel: PurePosixPath) -> Path:
        """Target path of a new file or link: its folder exists, nothing sits there."""
        dest = self._directory(rel.parent) / rel.name
        if dest.is_symlink() or dest.is_file():
            # A later archive (or a duplicate entry) wins; unlink so a link is not followed.
            dest.unlink()
            self.report.replaced.append(str(rel))
        elif dest.exists():
            raise self._refuse(rel, "a folder of that name exists already")
        return dest

    def directory(self, rel: PurePosixPath) -> None:
        self._directory(rel)
        self.report.directories += 1

    def file(self, rel: PurePosixPath, stream: IO[bytes]) -> None:
        dest = self._free(rel)
        # "xb" fails instead of following a link that appeared in the meantime.
        with dest.open("xb") as out:
            shutil.copyfileobj(stream, out, CHUNK)
        self.report.files += 1

    def symlink(self, rel: PurePosixPath, target: str) -> None:
        if not target or target.startswith("/") or _DRIVE.match(target):
            raise self._refuse(rel, f"empty or absolute link target {target!r} refused")
        joined = os.path.normpath(os.path.join(str(rel.parent), target))
        if joined == ".." or joined.startswith("../"):
            raise self._refuse(rel, f"link target {target!r} points outside the output")
        dest = self._free(rel)
        os.symlink(target, dest)
        # Links through other links can escape where the text alone looks harmless.
        if not _inside(str(self.root), os.path.realpath(dest)):
            dest.unlink()
            raise self._refuse(rel, f"link target {target!r} points outside the output")
        self.links.append(dest)
        self.report.links += 1

    def hardlink(self, rel: PurePosixPath, target: PurePosixPath) -> None:
        source = self.root / target
        if not _inside(str(self.root), os.path.realpath(source)) or not source.is_file():
            raise self._refuse(rel, f"hard link to {str(target)!r}, which is not a file "
                                    "extracted before it")
        # Copy instead of linking: the output must not share inodes with anything.
        with source.open("rb") as stream:
            self.file(rel, stream)

    def check_links(self) -> None:
        for link in self.links:
            if not _inside(str(self.root), os.path.realpath(link)):
                rel = link.relative_to(self.root)
                raise WorkflowInputError(self.archive, f"entry {str(rel)!r}: link resolves "
                                                       "outside the output")


def _progress(iterable: Iterable, archive: Path, total: int | None = None) -> tqdm:
    return tqdm(iterable, total=total, desc=archive.name, unit="entry", file=sys.stderr,
                mininterval=2.0)


def _extract_zip(archive: Path, writer: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in _progress(infos, archive, total=len(infos)):
            rel = safe_member_path(archive, info.filename)
            if rel is None:
                continue
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.flag_bits & 0x1:
                raise writer._refuse(rel, "encrypted entry refused")
            if mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)
                         or stat.S_ISSOCK(mode)):
                raise writer._refuse(rel, "device or special file refused")
            if info.is_dir():
                writer.directory(rel)
            elif mode and stat.S_ISLNK(mode):
                writer.symlink(rel, zf.read(info).decode("utf-8", "surrogateescape"))
            else:
                # Reading the entry to its end makes zipfile check its CRC.
                with zf.open(info) as stream:
                    writer.file(rel, stream)


def _extract_tar(archive: Path, writer: _Writer) -> None:
    with tarfile.open(archive, mode="r:*") as tf:
        for member in _progress(tf, archive):
            rel = safe_member_path(archive, member.name)
            if rel is None:
                continue
            if member.isdir():
                writer.directory(rel)
            elif member.isreg():
                stream = tf.extractfile(member)
                assert stream is not None  # regular members always have data
                with stream:
                    writer.file(rel, stream)
            elif member.issym():
                writer.symlink(rel, member.linkname)
            elif member.islnk():
                try:
                    target = safe_member_path(archive, member.linkname)
                except WorkflowInputError:
                    target = None
                if target is None:
                    raise writer._refuse(rel, f"hard link target {member.linkname!r} refused "
                                              "(outside the output)")
                writer.hardlink(rel, target)
            elif member.isdev():
                raise writer._refuse(rel, "device or special file refused")
            else:
                raise writer._refuse(rel, f"unsupported entry type {member.type!r}")
        if not isinstance(tf.fileobj, (gzip.GzipFile, bz2.BZ2File, lzma.LZMAFile)):
            _check_tar_end(archive, tf)


def _check_tar_end(archive: Path, tf: tarfile.TarFile) -> None:
    """An uncompressed tar cut at a member boundary reads as complete; its end block tells.

    Compressed tars need no such check: their decompressors notice the missing stream end.
    """
    tf.fileobj.seek(tf.offset)
    block = tf.fileobj.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
        raise WorkflowInputError(archive, "truncated or corrupt tar archive (no end-of-archive "
                                          f"block after entry offset {tf.offset})")


_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
            gzip.BadGzipFile, UnicodeDecodeError, NotImplementedError)


def _extract_one(source: ArchiveSource, root: Path) -> _Writer:
    path = Path(source.path)
    if not path.is_file():
        raise WorkflowInputError(path, "archive not found")
    kind = archive_kind(path)
    verify_checksums(source)
    report = ExtractionReport(archive=path.name, kind=kind)
    writer = _Writer(root, path, report)
    try:
        if kind == "zip":
            _extract_zip(path, writer)
        elif kind == "tar":
            _extract_tar(path, writer)
        else:
            with path.open("rb") as stream:
                writer.file(PurePosixPath(path.name), stream)
    except WorkflowInputError:
        raise
    except _CORRUPT as exc:
        raise WorkflowInputError(path, f"truncated or corrupt archive ({exc})") from exc
    except RuntimeError as exc:  # zipfile: encrypted or otherwise unreadable entry
        raise WorkflowInputError(path, f"unreadable archive ({exc})") from exc
    except OSError as exc:
        if exc.errno is None:  # bz2 and friends report bad data without an errno
            raise WorkflowInputError(path, f"truncated or corrupt archive ({exc})") from exc
        raise
    return writer


def reads_in_place(sources: Sequence[ArchiveSource]) -> bool:
    """Whether every download is a zip or a plain file (tar archives are extracted)."""
    return all(archive_kind(source.path) in ("zip", "file") for source in sources)


def verify_in_place(sources: Sequence[ArchiveSource], manifest: Path | str) -> dict:
    """Verify the downloads and write the manifest readers open them in place through.

    Instead of unpacking hundreds of thousands of files: each download's checksums are
    checked, each zip's central directory is read and every member name passes the same
    checks as extraction (no absolute names, no ``..``, no links, devices or encrypted
    members, no name twice); corrupt member data is caught when it is read (CRC-32).
    The manifest (``{D}/raw/<dataset>.json``) lists the downloads with their sizes.
    """
    manifest = Path(manifest)
    if not sources:
        raise WorkflowInputError(manifest, "no archives given to verify")
    entries, members = [], {}
    for source in sources:
        path = Path(source.path)
        if not path.is_file():
            raise WorkflowInputError(path, "archive not found")
        kind = archive_kind(path)
        if kind == "tar":
            raise WorkflowInputError(path, "a tar archive cannot be read in place (the "
                                           "extract rule unpacks it)")
        verify_checksums(source)
        entry = {"path": str(path), "kind": kind, "bytes": path.stat().st_size,
                 "sha256": source.sha256, "md5": source.md5}
        tree = ArchiveTree(None, [entry])
        entry["files"] = len(tree.table())
        for name in tree.table():
            members[name] = path.name
        entries.append(entry)
    data = {"format": RAW_TREE_FORMAT, "archives": entries, "files": len(members)}
    write_json(manifest, data)
    return data


def extract_archives(sources: Sequence[ArchiveSource], out_dir: Path | str) -> list[ExtractionReport]:
    """Verify and unpack every source into ``out_dir`` (replaced whole), all or nothing.

    Extraction folders left beside ``out_dir`` by a killed earlier run are removed first.
    """
    out_dir = Path(out_dir)
    if not sources:
        raise WorkflowInputError(out_dir, "no archives given to extract")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    tmp = temporary_name(out_dir, "partial")
    remove_path(tmp)
    tmp.mkdir(mode=0o700)
    with terminate_as_exit():
        try:
            writers = [_extract_one(source, tmp) for source in sources]
            # Last, as a later archive's link can redirect an earlier archive's link outside.
            for writer in writers:
                writer.check_links()
            tmp.chmod(0o755)
            if out_dir.is_symlink() or out_dir.exists():
                old = temporary_name(out_dir, "old")
                remove_path(old)
                old.mkdir(mode=0o700)
                os.replace(out_dir, old / "previous")
                os.replace(tmp, out_dir)
                shutil.rmtree(old)
            else:
                os.replace(tmp, out_dir)
            return [writer.report for writer in writers]
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

"""Packed image sets: the images of one set in one uncompressed ZIP file, read by name.

A set of crops or person images used to be a folder of one file per image: about a million
files at the paper's size, which exceeds common inode quotas on cluster filesystems and
costs one metadata round trip per image per epoch. A pack holds the same files, with the
same relative names and the same bytes, as members of one ZIP archive:

- stored, not compressed (``ZIP_STORED``): JPEG and PNG do not shrink, and a stored member
  is a plain byte range of the file, read with one ``pread`` (no decompressor, no seek
  state shared between threads);
- ZIP64 when a pack outgrows 4 GiB (the standard library writes it when needed);
- deterministic: members in the order they were added (callers add them in a fixed
  order), every timestamp 1980-01-01, fixed permissions, so the same images give the same
  bytes on every run and every machine;
- the central directory is the index: ``unzip -l`` lists a pack, ``unzip`` (or
  ``scripts/export_pack.py``) turns it back into today's folder, and any ZIP reader opens
  members by name.

Tar with a separate index (webdataset's layout) was the alternative; ZIP keeps the index
inside the file, so a pack is one file that is complete or absent, with nothing beside it
to keep in step.

:class:`PackReader` is what every consumer reads through (training loaders, embeddings,
detection, figures). It opens its file lazily in each process, so it pickles into
DataLoader workers as a path plus the member table. It also reads members of any other ZIP
(raw downloads read in place): compressed members go through :mod:`zipfile`.
An overlay (``open_pack(delta, base=...)``) reads a member from the delta pack when it is
there and from the base otherwise: an anonymised variant stores only the images it changes.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from overlearning.core.atomic import (
    atomic_directory,
    read_json,
    remove_stale_temporaries,
    temporary_name,
    terminate_as_exit,
    writing,
)
from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import (
    IMAGE_SUFFIXES,
    image_from_bytes,
    rgb_from_bytes,
    size_from_bytes,
)
from overlearning.core.image_io import image_names as folder_image_names
from overlearning.core.paths import _inside, check_relative, contained

PACK_SUFFIX = ".zip"
# ZIP's earliest representable time: no clock, timezone or umask reaches a pack's bytes.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--
_UNIX = 3  # "version made by" host: Unix, so unzip applies the mode above
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class Member:
    """Where one member's bytes are and what they must check against."""

    size: int
    crc: int
    header_offset: int
    stored: bool


def _member_table(path: Path) -> dict[str, Member]:
    """name -> Member from a ZIP's central directory; unsafe or duplicate names refused."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except FileNotFoundError:
        raise WorkflowInputError(path, "pack file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WorkflowInputError(path, f"not a readable ZIP pack ({exc})") from None
    table: dict[str, Member] = {}
    for position, info in enumerate(infos):
        if info.is_dir():
            continue
        entry = f"member {position} ({info.filename!r})"
        name = check_relative(info.filename, path, entry)
        if name != info.filename:
            raise WorkflowInputError(path, f"{entry}: expected a plain relative name, found "
                                           f"{info.filename!r}")
        if info.flag_bits & 0x1:
            raise WorkflowInputError(path, f"{entry}: encrypted member refused")
        kind = (info.external_attr >> 16) & 0o170000
        if info.create_system == _UNIX and kind not in (0, 0o100000):
            # A link (or device) read in place would stand for a file elsewhere.
            raise WorkflowInputError(path, f"{entry}: link or special file refused")
        if name in table:
            raise WorkflowInputError(path, f"{entry}: the name appears twice")
        table[name] = Member(info.file_size, info.CRC, info.header_offset,
                             info.compress_type == zipfile.ZIP_STORED)
    return table


class PackReader:
    """Members of one pack (or any ZIP) by name; with ``base``, an overlay on that pack."""

    def __init__(self, path: Path | str, base: PackReader | None = None) -> None:
        self.path = Path(path)
        self.base = base
        self._table: dict[str, Member] | None = None
        self._names: list[str] | None = None
        self._fd: int | None = None
        self._archive: zipfile.ZipFile | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()  # threads of one process share one descriptor

    # Pickled as path, base and member table; file handles belong to one process.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "base": self.base, "_table": self._table}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["base"])  # type: ignore[misc]
        self._table = state["_table"]

    def __repr__(self) -> str:
        return f"PackReader({str(self.path)!r}{', base=' + repr(self.base) if self.base else ''})"

    def table(self) -> dict[str, Member]:
        """This pack's own members (without the base's)."""
        if self._table is None:
            self._table = _member_table(self.path)
        return self._table

    def names(self) -> list[str]:
        """Every member name (the base's too), sorted."""
        if self._names is None:
            own = self.table().keys()
            self._names = sorted(own | set(self.base.names()) if self.base else own)
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self.table() or (self.base is not None and name in self.base)

    def __len__(self) -> int:
        return len(self.names()) if self.base else len(self.table())

    def where(self, name: str) -> str:
        """``<pack>:<member>``: how errors name a member."""
        owner = self if self.base is None or name in self.table() else self.base
        return f"{owner.path}:{name}"

    def read_bytes(self, name: str) -> bytes:
        """The member's bytes, checked against its size and CRC-32."""
        member = self.table().get(name)
        if member is None:
            if self.base is not None:
                return self.base.read_bytes(name)
            raise WorkflowInputError(self.path, f"member {name!r} not found in the pack")
        data = self._read_stored(name, member) if member.stored else self._read_zipped(name)
        if len(data) != member.size or zlib.crc32(data) != member.crc:
            raise WorkflowInputError(self.path, f"member {name!r}: size or CRC-32 differs from "
                                                "the pack's index (corrupt or truncated pack)")
        return data

    def open_image(self, name: str) -> Image.Image:
        """The member decoded as a PIL image (pixels loaded, size limit checked first)."""
        return image_from_bytes(self.read_bytes(name), self.where(name))

    def read_rgb(self, name: str) -> np.ndarray:
        """H x W x 3 uint8 of the member, as ``image_io.read_rgb`` reads a file."""
        return rgb_from_bytes(self.read_bytes(name), self.where(name))

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        if self._archive is not None and self._pid == os.getpid():
            self._archive.close()
        self._fd, self._archive, self._pid = None, None, None
        if self.base is not None:
            self.base.close()

    def __enter__(self) -> PackReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to release
            pass

    def _handle(self) -> int:
        fd = self._fd
        if fd is not None and self._pid == os.getpid():
            return fd
        if self._pid is not None and self._pid != os.getpid():
            # A forked copy: the parent's lock may have been held by a thread at the fork.
            self._lock = threading.Lock()
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked worker: its own descriptor
                self._fd, self._archive, self._pid = None, None, os.getpid()
            if self._fd is None:
                try:
                    self._fd = os.open(self.path, os.O_RDONLY)
                except FileNotFoundError:
                    raise WorkflowInputError(self.path, "pack file not found") from None
            return self._fd

    def _read_stored(self, name: str, member: Member) -> bytes:
        fd = self._handle()
        header = os.pread(fd, _LOCAL_HEADER.size, member.header_offset)
        if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
            raise WorkflowInputError(self.path, f"member {name!r}: no local header at offset "
                                                f"{member.header_offset} (corrupt pack)")
        name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
        start = member.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        return os.pread(fd, member.size, start)

    def _read_zipped(self, name: str) -> bytes:
        self._handle()
        with self._lock:
            if self._archive is None:
                self._archive = zipfile.ZipFile(self.path)
        try:
            return self._archive.read(name)
        except (zipfile.BadZipFile, OSError, zlib.error, EOFError) as exc:
            raise WorkflowInputError(self.path, f"member {name!r}: unreadable ({exc})") from None


class FolderImages:
    """Images under a folder, read by '/'-separated name like pack members.

    The reader of ``directory:`` datasets and extracted downloads. Every name is checked
    like :func:`overlearning.core.paths.contained` (relative, no ``..``, no link leaving
    the folder), at the cost of one ``lstat`` per file: the real path of each sub-folder
    is resolved once per job and kept (folders of a download do not move during a job),
    and only a file that is itself a link is resolved in full.
    """

    def __init__(self, root: Path | str) -> None:
        self.path = Path(root)
        self._root = str(self.path)
        self._real_root = os.path.realpath(self.path)
        self._real_dirs: dict[str, str] = {"": self._real_root}

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"FolderImages({self._root!r})"

    def resolve(self, name: object, source: object = None, entry: str = "name",
                check_link: bool = True) -> Path:
        """``root / name``, refused (naming ``source`` and ``entry``) unless contained.

        ``check_link=False`` leaves out the last component's link check, for a caller that
        opens the file without following a link (:meth:`read_bytes`).
        """
        source = self.path if source is None else source
        clean = check_relative(name, source, entry)
        parent = clean.rpartition("/")[0]
        real_parent = self._real_dirs.get(parent)
        if real_parent is None:
            real_parent = os.path.realpath(os.path.join(self._root, parent))
            if not _inside(self._real_root, real_parent):
                return contained(self.path, name, source, entry)  # raises, naming the link
            self._real_dirs[parent] = real_parent
        candidate = os.path.join(self._root, clean)
        if check_link and os.path.islink(candidate):
            return contained(self.path, name, source, entry)
        return Path(candidate)

    def where(self, name: str) -> str:
        return os.path.join(self._root, name)

    def read_bytes(self, name: str) -> bytes:
        path = self.resolve(name, check_link=False)
        try:
            # One system call checks and opens: a link as the last component is refused
            # here (ELOOP) and then resolved in full by contained().
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise WorkflowInputError(path, "image file not found") from None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise WorkflowInputError(path, f"unreadable ({exc})") from None
            path = contained(self.path, name, self.path, "name")
            fd = os.open(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def open_image(self, name: str) -> Image.Image:
        return image_from_bytes(self.read_bytes(name), self.where(name))

    def read_rgb(self, name: str) -> np.ndarray:
        return rgb_from_bytes(self.read_bytes(name), self.where(name))

    def close(self) -> None:
        """Nothing held open (each read opens and closes its file)."""


RAW_TREE_FORMAT = "overlearning-raw-tree/1"


class ArchiveTree:
    """A dataset's downloads read in place, as their extraction would lay them out.

    Every zip's members under their names, every plain file (OVIS's annotations JSON) at
    the top under its file name; a later download's file replaces an earlier one's, as
    extraction does. Built from the manifest the ``extract`` rule writes once it has
    verified the downloads (or from one zip). Member names pass the pack checks (relative,
    no ``..``, no duplicates, no links or encrypted members); a download whose size differs
    from the verified one is refused.
    """

    def __init__(self, manifest: Path | str | None = None,
                 archives: list[dict[str, Any]] | None = None) -> None:
        self.path = Path(manifest) if manifest is not None else None
        self._archives = archives
        self._table: dict[str, tuple[PackReader | None, Path]] | None = None

    @classmethod
    def of_zip(cls, path: Path | str) -> ArchiveTree:
        return cls(None, [{"path": str(path), "kind": "zip", "bytes": None}])

    def archives(self) -> list[dict[str, Any]]:
        if self._archives is None:
            assert self.path is not None
            data = read_json(self.path)
            if not isinstance(data, dict) or data.get("format") != RAW_TREE_FORMAT:
                raise WorkflowInputError(self.path, f"expected a verified-downloads manifest "
                                                    f"({RAW_TREE_FORMAT}), found another file")
            self._archives = data["archives"]
        return self._archives

    def table(self) -> dict[str, tuple[PackReader | None, Path]]:
        """name -> (reader of its zip, or None for a plain file; the download)."""
        if self._table is None:
            table: dict[str, tuple[PackReader | None, Path]] = {}
            for entry in self.archives():
                path = Path(entry["path"])
                if entry.get("bytes") is not None and (
                        not path.is_file() or path.stat().st_size != entry["bytes"]):
                    raise WorkflowInputError(path, f"not the verified download named in "
                                                   f"{self.path} (missing or another size); "
                                                   "rerun the extract rule")
                if entry["kind"] == "zip":
                    reader = open_pack(path)
                    table.update((name, (reader, path)) for name in reader.table())
                else:
                    table[path.name] = (None, path)
            self._table = table
        return self._table

    def read(self, name: str) -> bytes:
        found = self.table().get(name)
        if found is None:
            raise WorkflowInputError(self.path or "<archives>", f"{name!r}: no such file in "
                                                                "the downloads")
        reader, path = found
        return path.read_bytes() if reader is None else reader.read_bytes(name)

    def where(self, name: str) -> str:
        found = self.table().get(name)
        return f"{found[1]}:{name}" if found and found[0] is not None else str(
            found[1] if found else name)

    def view(self, prefix: str, location: Path | str) -> TreeImages:
        return TreeImages(self, check_relative(prefix, location, "path inside the downloads")
                          if prefix else "", Path(location))


class TreeImages:
    """The files under one folder of an :class:`ArchiveTree`, read by relative name."""

    def __init__(self, tree: ArchiveTree, prefix: str, location: Path) -> None:
        self.tree = tree
        self.prefix = prefix + "/" if prefix else ""
        self.path = location
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            cut = len(self.prefix)
            self._names = sorted(n[cut:] for n in self.tree.table() if n.startswith(self.prefix))
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.prefix + name in self.tree.table()

    def is_empty(self) -> bool:
        return not self.names()

    def where(self, name: str) -> str:
        return self.tree.where(self.prefix + name)

    def read_bytes(self, name: str) -> bytes:
        clean = check_relative(name, self.path, "name")
        if clean not in self:
            raise WorkflowInputError(f"{self.path}/{name}", "image file not found")
        return self.tree.read(self.prefix + clean)

    def open_image(self, name: str) -> Image.Image:
        return image_from_bytes(self.read_bytes(name), self.where(name))

    def read_rgb(self, name: str) -> np.ndarray:
        return rgb_from_bytes(self.read_bytes(name), self.where(name))

    def close(self) -> None:
        """The tree's zip readers close with the process."""


ImageSource = FolderImages | PackReader | TreeImages


def _through_file(location: Path) -> tuple[Path, str] | None:
    """(the existing file a path runs through, the rest of the path inside it), if any."""
    for parent in location.parents:
        if parent.is_file():
            return parent, location.relative_to(parent).as_posix()
        if parent.is_dir():
            return None
    return None


def open_images(location: Path | str | ImageSource) -> ImageSource:
    """The reader of a set of images: a pack (``*.zip``), a folder of files, or a folder
    inside downloads read in place (a path through the ``extract`` rule's manifest
    ``{D}/raw/<dataset>.json``, or through a zip)."""
    if isinstance(location, FolderImages | PackReader | TreeImages):
        return location
    location = Path(location)
    if location.is_dir():
        return FolderImages(location)
    if location.suffix.lower() == PACK_SUFFIX and location.is_file():
        return open_pack(location)
    through = _through_file(location)
    if through is None:
        raise WorkflowInputError(location, "pack file not found" if location.suffix.lower()
                                 == PACK_SUFFIX else "image folder not found")
    outer, inner = through
    tree = ArchiveTree.of_zip(outer) if outer.suffix.lower() == PACK_SUFFIX else ArchiveTree(outer)
    view = tree.view(inner, location)
    if view.is_empty():
        raise WorkflowInputError(location, f"image folder not found in the downloads ({outer})")
    return view


def read_file_at(location: Path | str) -> tuple[bytes, str]:
    """(bytes, name for errors) of a file, or of a file inside downloads read in place."""
    location = Path(location)
    if location.is_file():
        return location.read_bytes(), str(location)
    through = _through_file(location)
    if through is None:
        raise WorkflowInputError(location, "file not found")
    outer, inner = through
    tree = ArchiveTree.of_zip(outer) if outer.suffix.lower() == PACK_SUFFIX else ArchiveTree(outer)
    name = check_relative(inner, location, "path inside the downloads")
    if name not in tree.table():
        raise WorkflowInputError(location, f"file not found in the downloads ({outer})")
    return tree.read(name), tree.where(name)


def image_names(images: ImageSource) -> list[str]:
    """The image names of a source, sorted: a pack's image members, a folder's image files
    (directly inside it, as :func:`overlearning.core.image_io.image_names` lists them)."""
    if isinstance(images, PackReader):
        return [n for n in images.names() if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    if isinstance(images, TreeImages):
        return [n for n in images.names()
                if "/" not in n and Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return folder_image_names(images.path)


def check_image(images: ImageSource, name: object, source: object, entry: str) -> str:
    """``name`` as an image of ``images``, refused naming ``source`` and ``entry`` unless it
    is a member of the pack or a file contained in the folder (checked before any read)."""
    if isinstance(images, FolderImages):
        images.resolve(name, source, entry)
        return str(name)
    clean = check_relative(name, source, entry)
    if clean not in images:
        raise WorkflowInputError(source, f"{entry}: {name!r} is not a member of {images.path}")
    return clean


def image_header_size(images: ImageSource, name: str) -> tuple[int, int]:
    """(width, height) of one image from its header, without decoding its pixels."""
    return size_from_bytes(images.read_bytes(name), images.where(name))


def open_pack(path: Path | str, base: Path | str | PackReader | None = None) -> PackReader:
    """A reader of the pack at ``path``; ``base`` makes it an overlay (delta over base)."""
    if base is not None and not isinstance(base, PackReader):
        base = PackReader(base)
    return PackReader(path, base)


def pack_path(folder: Path | str) -> Path:
    """The pack that replaces an image folder: ``<folder>.zip``."""
    folder = Path(folder)
    return folder.with_name(folder.name + PACK_SUFFIX)


# Field limits of the classic ZIP records; beyond them the ZIP64 records carry the value.
ZIP64_LIMIT = 0xFFFFFFFF
ZIP64_COUNT_LIMIT = 0xFFFF
_MAX_MEMBER = 0xFFFFFFFF  # members stay below 4 GiB: their sizes fit the classic fields
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_DOS_TIME = 0
_UTF8_NAME = 0x0800
_CENTRAL_HEADER = struct.Struct("<4s6H3I5H2I")
_ZIP64_END = struct.Struct("<4sQ2H2I4Q")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_END = struct.Struct("<4s4H2IH")


class PackWriter:
    """Adds stored members to a pack being written by :func:`write_pack`.

    The records are written here rather than by :mod:`zipfile`, whose writer seeks back
    to patch every local header (three system calls per member, a second per thousand
    crops); the layout is plain PKZIP APPNOTE: local header + bytes per member, then the
    central directory, with ZIP64 records where an offset or the member count outgrows
    the classic fields. tests/test_packs.py reads the result with :mod:`zipfile` and
    ``unzip``.
    """

    def __init__(self, handle: Any, path: Path) -> None:
        self._handle = handle
        self.path = path
        self._offset = 0
        self._central: list[bytes] = []
        self._names: set[str] = set()

    def add(self, name: str, data: bytes) -> None:
        """Add ``data`` as member ``name`` (a '/'-separated relative name, new in this pack)."""
        clean = check_relative(name, self.path, "member name")
        if clean != name:
            raise WorkflowInputError(self.path, f"member name {name!r}: expected a plain "
                                                f"relative name like {clean!r}")
        if name in self._names:
            raise WorkflowInputError(self.path, f"member {name!r} added twice")
        if len(data) >= _MAX_MEMBER:
            raise ValueError(f"{self.path}: member {name!r} of {len(data)} bytes is larger "
                             "than a stored pack member may be (4 GiB)")
        self._names.add(name)
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else _UTF8_NAME
        crc = zlib.crc32(data)
        self._handle.write(_LOCAL_HEADER.pack(
            _LOCAL_SIGNATURE, 20, flags, zipfile.ZIP_STORED, _DOS_TIME, _DOS_DATE, crc,
            len(data), len(data), len(encoded), 0) + encoded)
        self._handle.write(data)
        offset = self._offset
        extra = b""
        if offset >= ZIP64_LIMIT:
            extra = struct.pack("<HHQ", 0x0001, 8, offset)
            offset = _MAX_MEMBER  # "see the ZIP64 record"
        version = 45 if extra else 20
        self._central.append(_CENTRAL_HEADER.pack(
            b"PK\x01\x02", (_UNIX << 8) | version, version, flags, zipfile.ZIP_STORED,
            _DOS_TIME, _DOS_DATE, crc, len(data), len(data), len(encoded), len(extra), 0, 0, 0,
            _FILE_MODE, offset) + encoded + extra)
        self._offset += _LOCAL_HEADER.size + len(encoded) + len(data)

    def finish(self) -> None:
        """Write the central directory and the end records."""
        start = self._offset
        directory = b"".join(self._central)
        self._handle.write(directory)
        count, size = len(self._central), len(directory)
        if count >= ZIP64_COUNT_LIMIT or start >= ZIP64_LIMIT or size >= ZIP64_LIMIT:
            end64 = start + size
            self._handle.write(_ZIP64_END.pack(b"PK\x06\x06", _ZIP64_END.size - 12,
                                               (_UNIX << 8) | 45, 45, 0, 0, count, count,
                                               size, start))
            self._handle.write(_ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, end64, 1))
            # Every classic field that the ZIP64 record carries says so with all ones.
            count, start, size = 0xFFFF, _MAX_MEMBER, _MAX_MEMBER
        self._handle.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, size, start, 0))

    def __len__(self) -> int:
        return len(self._names)


@contextmanager
def write_pack(path: Path | str) -> Iterator[PackWriter]:
    """Yield a writer; the pack appears at ``path`` only when the block succeeds.

    Written to ``.<name>.tmp-<pid>`` beside it and renamed (core/atomic.py's convention):
    a failure, SIGTERM included, leaves the previous pack or nothing, never half a pack.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    with terminate_as_exit():
        try:
            with writing(path), open(tmp, "wb", buffering=1 << 20) as handle:
                writer = PackWriter(handle, path)
                yield writer
                writer.finish()
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def verify_pack(path: Path | str) -> dict[str, int]:
    """Read every member and check its size and CRC-32; returns members and bytes.

    A pack copied to node-local disk is checked this way before it is read from there.
    """
    reader = open_pack(path)
    total = 0
    with reader:
        for name in reader.table():
            total += len(reader.read_bytes(name))
    return {"members": len(reader.table()), "bytes": total}


def export_pack(pack: Path | str | PackReader, out_dir: Path | str) -> int:
    """Write every member of the pack as a plain file under ``out_dir``; returns the count."""
    reader = pack if isinstance(pack, PackReader) else open_pack(pack)
    with reader, atomic_directory(out_dir) as tmp:
        for name in reader.names():
            # Names were checked relative and plain when the table was read.
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(reader.read_bytes(name))
    return len(reader)


def pack_of_files(path: Path | str, files: dict[str, Path | str]) -> int:
    """Write a pack of existing files (``{member name: file}``, added in sorted name order)."""
    with write_pack(path) as writer:
        for name in sorted(files):
            writer.add(name, Path(files[name]).read_bytes())
    return len(files)

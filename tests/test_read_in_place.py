"""Downloads read in place (zip members) give exactly what their extraction gives.

The datasets rules read a dataset given as zip archives through the manifest the
``verify_downloads`` rule writes ({D}/raw/<dataset>.json): no file is unpacked. These
tests build the same downloads, extract them with the extraction code, read them in place,
and compare what the preparation writes from each, byte for byte.
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import open_images, open_pack
from overlearning.data.archives import ArchiveSource, extract_archives, verify_in_place
from overlearning.data.crops import make_crops
from overlearning.data.person_sets import prepare_person_set
from overlearning.data.vis_frames import convert_video_annotations
from tests.test_prepare_fixtures import build_market, build_vis


def _zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    """Every file under ``folder`` as ``<prefix>/<relative name>``, deflated like downloads."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{prefix}/", b"")  # folder entries, as zip tools write them
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return archive


def _both(tmp_path: Path, archives: list[Path]) -> tuple[Path, Path]:
    """(extracted folder, in-place manifest) of the same downloads."""
    sources = [ArchiveSource(a) for a in archives]
    extract_archives(sources, tmp_path / "raw" / "ds")
    verify_in_place(sources, tmp_path / "raw" / "ds.json")
    return tmp_path / "raw" / "ds", tmp_path / "raw" / "ds.json"


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_vis_frames_and_crops_read_in_place_equal_the_extracted(tmp_path: Path) -> None:
    build_vis(tmp_path / "src", n_videos=4)
    archive = _zip_folder(tmp_path / "src", tmp_path / "dl" / "train.zip", "train")
    extracted, manifest = _both(tmp_path, [archive])
    assert not (tmp_path / "raw" / "ds.json").is_dir()
    outs = {}
    for kind, root in (("extracted", extracted), ("in_place", manifest)):
        out = tmp_path / kind
        convert_video_annotations(root / "train/instances.json", out / "instances.json")
        make_crops(out / "instances.json", root / "train/JPEGImages", out)
        outs[kind] = _tree(out)
    assert outs["extracted"] == outs["in_place"]
    assert len(open_pack(tmp_path / "in_place/foregroundImages_cropped.zip").names()) == 16
    # Nothing was unpacked for the in-place read: the raw folder holds the manifest alone.
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["ds", "ds.json"]
    listed = json.loads(manifest.read_text())
    assert [a["kind"] for a in listed["archives"]] == ["zip"]
    assert listed["files"] == len(_tree(extracted))


def test_person_sets_read_in_place_equal_the_extracted(tmp_path: Path) -> None:
    build_market(tmp_path / "src")
    images = _zip_folder(tmp_path / "src", tmp_path / "dl" / "market.zip", "Market")
    extracted, manifest = _both(tmp_path, [images])
    outs = []
    for kind, root in (("extracted", extracted), ("in_place", manifest)):
        prepare_person_set(root / "Market", root / "Market", tmp_path / kind, threads=2)
        outs.append(_tree(tmp_path / kind))
    assert outs[0] == outs[1] and len(outs[0]) == 2


def test_plain_files_sit_at_the_top_and_a_later_download_wins(tmp_path: Path) -> None:
    (tmp_path / "dl").mkdir()
    with zipfile.ZipFile(tmp_path / "dl" / "a.zip", "w") as zf:
        zf.writestr("notes.json", b'{"from": "zip"}')
        zf.writestr("train/x.txt", b"x")
    (tmp_path / "dl" / "notes.json").write_bytes(b'{"from": "plain"}')
    extracted, manifest = _both(tmp_path, [tmp_path / "dl/a.zip", tmp_path / "dl/notes.json"])
    assert (extracted / "notes.json").read_bytes() == b'{"from": "plain"}'
    view = open_images(manifest / "train")
    assert view.names() == ["x.txt"] and view.read_bytes("x.txt") == b"x"
    assert open_images(Path(str(manifest)) / "train").read_bytes("x.txt") == b"x"
    from overlearning.core.packs import read_file_at
    assert read_file_at(manifest / "notes.json")[0] == b'{"from": "plain"}'


@pytest.mark.parametrize("bad, message", [
    ({"../evil.txt": b"x"}, r"'\.\.' in path"),
    ({"/abs.txt": b"x"}, "absolute path"),
])
def test_unsafe_member_names_are_refused_before_anything_is_read(
        tmp_path: Path, bad: dict[str, bytes], message: str) -> None:
    archive = tmp_path / "dl.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        for name, data in bad.items():
            zf.writestr(name, data)
    with pytest.raises(WorkflowInputError, match=message):
        verify_in_place([ArchiveSource(archive)], tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("mode", [stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o644])
def test_links_and_devices_in_a_zip_are_refused(tmp_path: Path, mode: int) -> None:
    archive = tmp_path / "dl.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("train/link.jpg")
        info.create_system = 3
        info.external_attr = mode << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(WorkflowInputError, match="link or special file refused"):
        verify_in_place([ArchiveSource(archive)], tmp_path / "m.json")


def test_checksums_are_checked_and_a_changed_download_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "dl.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/a.txt", b"a")
    with pytest.raises(WorkflowInputError, match="sha256 mismatch"):
        verify_in_place([ArchiveSource(archive, sha256="0" * 64)], tmp_path / "m.json")
    verify_in_place([ArchiveSource(archive)], tmp_path / "m.json")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("train/b.txt", b"b")
    with pytest.raises(WorkflowInputError, match="not the verified download"):
        open_images(tmp_path / "m.json" / "train").names()


def test_corrupt_member_data_is_caught_when_read(tmp_path: Path) -> None:
    archive = tmp_path / "dl.zip"
    payload = bytes(range(256)) * 40
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("train/a.bin", payload)
    data = bytearray(archive.read_bytes())
    data[data.index(payload) + 100] ^= 0xFF
    archive.write_bytes(bytes(data))
    verify_in_place([ArchiveSource(archive)], tmp_path / "m.json")
    with pytest.raises(WorkflowInputError, match="CRC-32 differs"):
        open_images(tmp_path / "m.json" / "train").read_bytes("a.bin")


def test_a_tar_download_is_not_read_in_place(tmp_path: Path) -> None:
    (tmp_path / "a.tar").write_bytes(b"")
    with pytest.raises(WorkflowInputError, match="cannot be read in place"):
        verify_in_place([ArchiveSource(tmp_path / "a.tar")], tmp_path / "m.json")

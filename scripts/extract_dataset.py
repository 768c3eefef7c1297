"""Verify the checksums of one dataset's downloads and unpack them safely into one folder,
or (--in-place) write the manifest that reads zip downloads in place instead."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from overlearning.data.archives import ArchiveSource, extract_archives, verify_in_place
from overlearning.workflow.cli import ScriptParser


def _optional(values: list[str] | None, count: int, flag: str,
              parser: argparse.ArgumentParser) -> list[str | None]:
    if not values:
        return [None] * count
    if len(values) != count:
        parser.error(f"{flag} needs one value per archive ('-' for none), got {len(values)}")
    return [None if value in ("-", "") else value for value in values]


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--archives", nargs="+", required=True,
                        help="downloads: .zip, .tar[.gz|.bz2|.xz], or plain files to copy")
    parser.add_argument("--sha256", nargs="*", help="expected sha256 per archive, '-' for none")
    parser.add_argument("--md5", nargs="*", help="expected md5 per archive, '-' for none")
    parser.add_argument("--out", required=True,
                        help="folder to create (replaced whole), or with --in-place the "
                             "manifest JSON to write")
    parser.add_argument("--in-place", action="store_true",
                        help="zip and plain downloads: verify and list them, extract nothing")
    args = parser.parse(argv)
    count = len(args.archives)
    sha256 = _optional(args.sha256, count, "--sha256", parser)
    md5 = _optional(args.md5, count, "--md5", parser)
    sources = [ArchiveSource(Path(path), sha, md) for path, sha, md
               in zip(args.archives, sha256, md5, strict=True)]
    if args.in_place:
        manifest = verify_in_place(sources, args.out)
        for entry in manifest["archives"]:
            print(f"{Path(entry['path']).name} ({entry['kind']}): {entry['files']} files, "
                  "read in place", file=sys.stderr)
        return 0
    for report in extract_archives(sources, args.out):
        print(f"{report.archive} ({report.kind}): {report.files} files, "
              f"{report.directories} folders, {report.links} links"
              + (f", {len(report.replaced)} replaced earlier files" if report.replaced else ""),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

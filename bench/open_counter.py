"""Count the files a job opened, from strace's trace on standard input (bench/scale_shim).

Reads lines of ``strace -f -y -z -e trace=open,openat,openat2,creat`` (successful calls
only, each ending ``= <fd><absolute path>``) and writes one JSON: every open, and those of
files inside the run folder (``--root``: the workflow's data, results, resources and logs),
split into reads, writes (opened for writing or created) and folder listings, plus the
number of distinct run files read. Not a benchmark itself (the Makefile runs
bench/bench_*.py only).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

RESULT = re.compile(r"= \d+<(?P<path>.*)>$")
WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT")


def count(lines: object, root: str) -> dict[str, int]:
    prefix = root.rstrip("/") + "/"
    totals = {"opens": 0, "run_reads": 0, "run_writes": 0, "run_folders": 0}
    read_files: set[str] = set()
    for line in lines:  # type: ignore[attr-defined]
        match = RESULT.search(line.rstrip("\n"))
        if match is None:
            continue
        totals["opens"] += 1
        path = match["path"]
        if not path.startswith(prefix):
            continue
        if "O_DIRECTORY" in line:
            totals["run_folders"] += 1
        elif "creat(" in line or any(flag in line for flag in WRITE_FLAGS):
            totals["run_writes"] += 1
        else:
            totals["run_reads"] += 1
            read_files.add(path)
    totals["run_files_read"] = len(read_files)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="the run folder (absolute)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    totals = count(sys.stdin, args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(totals, sort_keys=True) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

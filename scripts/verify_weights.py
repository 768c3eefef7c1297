"""Check a copied weights cache against its manifests: every file there, every sha256 equal.

    python scripts/verify_weights.py resources/weights

For clusters whose login node has no internet: the cache is filled on another machine
(`snakemake weights`), copied as a folder, and checked here on arrival, before any job
reads it. Each model has its own folder with its own manifest.json; every model folder
found is checked. Prints one line per file (`ok` or what is wrong), then a summary; exits 1
when a file is missing or differs, a manifest is unreadable, or no model folder has one.
Files that no manifest lists are named but do not fail the check (jobs never read them).
Needs only the standard library and this checkout: it runs in the light login environment
(`make env-login`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as `python scripts/verify_weights.py` from a checkout where the package is not
# installed (the light login environment): the checkout's root holds `overlearning/`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overlearning.core.errors import WorkflowInputError  # noqa: E402
from overlearning.models.cache import (  # noqa: E402
    FETCH_HINT,
    MANIFEST,
    check_listed_file,
    read_manifest,
)


def verify_cache(cache: Path) -> tuple[list[str], list[str], list[str]]:
    """(verified files, one 'path: problem' line per bad file, files no manifest lists),
    paths relative to ``cache``.

    Raises WorkflowInputError when no model folder has a manifest or one is not a JSON
    object of file: sha256.
    """
    folders = sorted(path.parent for path in cache.glob(f"*/{MANIFEST}"))
    if not folders:
        raise WorkflowInputError(cache, f"no model folder with a {MANIFEST}; {FETCH_HINT}")
    good: list[str] = []
    bad: list[str] = []
    listed: set[str] = set()
    for folder in folders:
        manifest = read_manifest(folder)
        listed |= {f"{folder.name}/{rel}" for rel in [*manifest, MANIFEST]}
        for rel in sorted(manifest):
            try:
                check_listed_file(folder, rel, manifest)
            except WorkflowInputError as error:
                bad.append(f"{error.where}: {error.problem.split(';')[0]}")
            else:
                good.append(f"{folder.name}/{rel}")
    extra = sorted(rel for rel in (p.relative_to(cache).as_posix() for p in cache.rglob("*")
                                   if p.is_file()) if rel not in listed)
    return good, bad, extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path,
                        help="the weights cache folder (weights.cache), holding one folder per model")
    args = parser.parse_args(argv)
    try:
        good, bad, extra = verify_cache(args.cache)
    except WorkflowInputError as error:
        print(f"ERROR {error}", file=sys.stderr)
        return 1
    for rel in good:
        print(f"ok       {rel}")
    for line in bad:
        print(f"BAD      {line}")
    for rel in extra:
        print(f"unlisted {rel} (in no {MANIFEST}; jobs do not read it)")
    total = len(good) + len(bad)
    if bad:
        print(f"{args.cache}: {len(bad)} of {total} files do not match {MANIFEST}",
              file=sys.stderr)
        return 1
    print(f"{args.cache}: all {total} files match {MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

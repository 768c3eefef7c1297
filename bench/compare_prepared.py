"""Compare the prepared datasets of two demo runs: folders of files (before packs) against
packs (after), member by member.

Every image folder of the "before" run (``<set>/foregroundImages_cropped/`` and the other
image folders) must have a pack ``<folder>.zip`` in the "after" run holding exactly the
same names with exactly the same bytes; every other file under ``data/`` (indexes, split
JSON) must be byte-identical where both runs have it. Extracted raw downloads
(``data/raw/<dataset>/``, read in place after) and anonymised full copies (``data/anon``,
deltas after) are not prepared image sets and are left out.

    python bench/compare_prepared.py BEFORE/demo-run/data AFTER/demo-run/data [--out JSON]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from overlearning.core.packs import open_pack  # noqa: E402

SKIPPED = ("raw", "anon")


def image_folders(root: Path) -> list[Path]:
    """Folders of the before-run holding image files, outermost only."""
    folders = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIPPED or not path.is_dir():
            continue
        if any(parent in folders for parent in path.parents):
            continue
        if any(child.is_file() and child.suffix.lower() in (".jpg", ".png")
               for child in path.iterdir()) or path.name == "foregroundImages_cropped":
            folders.append(path)
    return folders


def compare(before: Path, after: Path) -> dict:
    result: dict = {"packs": {}, "files": {"same": 0, "different": [], "missing": []}}
    folders = image_folders(before)
    for folder in folders:
        rel = folder.relative_to(before).as_posix()
        pack = after / f"{rel}.zip"
        files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()
                 and not p.name.startswith(".")}
        if not pack.is_file():
            result["packs"][rel] = {"members": 0, "files": len(files), "missing_pack": True}
            continue
        reader = open_pack(pack)
        names = reader.names()
        same = sum(1 for n in names if n in files and reader.read_bytes(n) == files[n].read_bytes())
        result["packs"][rel] = {"files": len(files), "members": len(names), "identical": same,
                                "same_names": sorted(files) == names}
    for path in sorted(before.rglob("*")):
        rel = path.relative_to(before)
        if not path.is_file() or rel.parts[0] in SKIPPED or path.name.startswith("."):
            continue
        if any(folder in path.parents for folder in folders):
            continue
        other = after / rel
        if not other.is_file():
            result["files"]["missing"].append(rel.as_posix())
        elif other.read_bytes() == path.read_bytes():
            result["files"]["same"] += 1
        else:
            result["files"]["different"].append(rel.as_posix())
    packs = result["packs"].values()
    result["all_identical"] = (
        all(p.get("same_names") and p["identical"] == p["files"] == p["members"] for p in packs)
        and not result["files"]["different"] and not result["files"]["missing"])
    result["crops_compared"] = sum(p.get("identical", 0) for p in packs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="data/ of the run with image folders")
    parser.add_argument("after", type=Path, help="data/ of the run with packs")
    parser.add_argument("--out", type=Path, help="write the comparison as JSON here")
    args = parser.parse_args()
    result = compare(args.before, args.after)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    for rel, row in result["packs"].items():
        print(f"{rel}: {row}")
    print(f"other files: {result['files']['same']} identical, "
          f"different {result['files']['different']}, missing {result['files']['missing']}")
    print(f"all identical: {result['all_identical']} ({result['crops_compared']} images)")
    sys.exit(0 if result["all_identical"] else 1)


if __name__ == "__main__":
    main()

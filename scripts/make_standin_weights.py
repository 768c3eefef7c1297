"""Write official-format stand-ins of the configured models' published weights files.

The files have the published names, containers, nesting, prefixes, keys, shapes and dtypes
and seeded random values (overlearning.models.standins); `weights.source: files` with
`weights.files` pointing here reads them as it reads the real ones (`make rehearse`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from overlearning.models.standins import write_standin_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", nargs="+", required=True,
                        help="config files, later ones override (e.g. config.yaml config.rehearse.yaml)")
    parser.add_argument("--out", required=True, help="bundle folder to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models: dict = {}
    for path in args.config:
        update = (yaml.safe_load(Path(path).read_text()) or {}).get("models", {})
        for key, value in update.items():
            models.setdefault(key, {}).update(value)
    files = write_standin_bundle(models, args.out, args.seed)
    print(json.dumps({k: str(v) for k, v in sorted(files.items())}, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

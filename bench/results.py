"""Where every benchmark writes its result: ``<out>/<name>.json``, atomically.

Not a benchmark itself (the Makefile runs bench/bench_*.py only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from overlearning.core.atomic import write_text


def write_result(out: Path | str, name: str, result: Any) -> Path:
    """Write ``result`` as indented, key-sorted JSON to ``out/name.json`` and return the path."""
    path = Path(out) / f"{name}.json"
    write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path

"""Per-query evidence beside every metrics file: ``<metrics stem>.queries.csv.gz``.

One row per (attacker, query, rank) for the first ``top_k`` references the attacker's
search returns (kept references only, the query's own entry never), in long format so that
``pandas.read_csv(path)`` gives a table to filter and pivot. Columns:

- ``attacker``, ``query`` (position in the query set), ``query_file``, ``query_label``;
- ``ap_at_r``: the query's AP@R (study reading: excluded relevant items are misses), NaN
  where nothing is relevant; ``reid_ap``: its re-ID protocol AP (re-ID evaluations only);
- ``first_match_rank``: 1-based rank of its first correct match: in the re-ID protocol's
  ranking (same-camera matches dropped) for re-ID evaluations, otherwise within the
  ranking MAP@R reads (its first k references); 0 where none is found there;
- ``rank`` (1-based), ``reference`` (position in the reference list), ``reference_set``,
  ``reference_file``, ``reference_label``; ``score`` and ``score_kind``
  (``cosine_similarity``, or ``reranked_distance`` for k-reciprocal: lower is nearer);
- ``correct``: same label as the query; ``same_camera``: same identity and camera (the
  re-ID protocol ignores such a match); ``excluded``: the reference is on the evaluation's
  exclusion list (with exclusion off: index exclusion would have removed it).

Rows are built in overlearning.evaluate.evidence_rows; this module is only the file format
(the figures read it without importing any search). Written deterministically (fixed column order, float repr, gzip without name or time), so
the same metrics give the same bytes.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from overlearning.core.atomic import write_bytes

COLUMNS = ("attacker", "query", "query_file", "query_label", "ap_at_r", "reid_ap",
           "first_match_rank", "rank", "reference", "reference_set", "reference_file",
           "reference_label", "score", "score_kind", "correct", "same_camera", "excluded")
SUFFIX = ".queries.csv.gz"


def evidence_path(metrics_path: Path | str) -> Path:
    """The per-query file beside a metrics JSON."""
    path = Path(metrics_path)
    return path.with_name(path.name.removesuffix(".json") + SUFFIX)


def write_evidence(path: Path | str, frames: Sequence[pd.DataFrame]) -> Path:
    """Every attacker's rows in one gzip-compressed CSV (atomic, reproducible bytes)."""
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, float_format="%.10g", lineterminator="\n")
    write_bytes(path, gzip.compress(buffer.getvalue().encode(), compresslevel=6, mtime=0))
    return Path(path)


def read_evidence(path: Path | str) -> pd.DataFrame:
    """The per-query table of one metrics file."""
    return pd.read_csv(path, keep_default_na=True)

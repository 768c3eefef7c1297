"""The per-query evidence rows of one attacker (the format: overlearning.evaluate.evidence)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from overlearning.evaluate.evidence import COLUMNS
from overlearning.evaluate.ranking import MISSING
from overlearning.evaluate.retrieval_inputs import RetrievalInputs


def first_match_in(ranking: np.ndarray, inputs: RetrievalInputs) -> np.ndarray:
    """1-based rank of the first correct reference in each ranking row (0: none)."""
    if ranking.shape[1] == 0:  # nothing relevant anywhere: MAP@R's ranking is empty
        return np.zeros(len(ranking), dtype=np.int64)
    q_labels, r_labels = inputs.queries.labels, inputs.references.labels
    hits = (ranking != MISSING) & (r_labels[np.maximum(ranking, 0)] == q_labels[:, None])
    return np.where(hits.any(axis=1), np.argmax(hits, axis=1) + 1, 0)


def evidence_frame(attacker: str, inputs: RetrievalInputs, ranking: np.ndarray,
                   scores: np.ndarray, score_kind: str, ap_at_r: np.ndarray,
                   first_match: np.ndarray, reid_ap: np.ndarray | None,
                   reference_sets: Sequence[str]) -> pd.DataFrame:
    """Rows of one attacker: ``ranking`` (n_q, top_k) with ``MISSING`` padding left out."""
    q, r = inputs.queries, inputs.references
    rows, slots = np.nonzero(ranking != MISSING)
    refs = ranking[rows, slots]
    listed = inputs.listed if inputs.listed is not None else ~inputs.kept
    same_id = r.labels[refs] == q.labels[rows]
    cams_known = (q.cameras[rows] >= 0) & (r.cameras[refs] >= 0)
    sets = np.asarray(reference_sets, dtype=object)[inputs.part_of[refs]]
    reid = np.full(len(q), np.nan) if reid_ap is None else reid_ap
    return pd.DataFrame({
        "attacker": attacker,
        "query": rows,
        "query_file": q.files[rows],
        "query_label": q.labels[rows],
        "ap_at_r": ap_at_r[rows],
        "reid_ap": reid[rows],
        "first_match_rank": first_match[rows],
        "rank": slots + 1,
        "reference": refs,
        "reference_set": sets,
        "reference_file": r.files[refs],
        "reference_label": r.labels[refs],
        "score": scores[rows, slots],
        "score_kind": score_kind,
        "correct": same_id,
        "same_camera": same_id & cams_known & (q.cameras[rows] == r.cameras[refs]),
        "excluded": listed[refs],
    }, columns=list(COLUMNS))

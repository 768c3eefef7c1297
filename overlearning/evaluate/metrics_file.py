"""One metrics file: a query set against a reference list, with or without index exclusion.

General on purpose (queries + reference parts + optional exclusion lists -> JSON), so that
new settings (anonymised galleries, other probes) reuse it unchanged. The JSON holds no
paths, timestamps or machine facts (those go to the provenance file beside it), so the
same embeddings always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from overlearning.core.atomic import write_json
from overlearning.evaluate.metrics import evaluate_retrieval
from overlearning.evaluate.reid_protocol import pair_similarity_roc, reid_protocol
from overlearning.evaluate.retrieval_inputs import Part, RetrievalInputs, load_retrieval_inputs


def _part_summary(part: Part, count: int, excluded: int | None) -> dict:
    out: dict[str, Any] = {"set": Path(part.path).stem, "subset": part.subset, "count": count}
    if excluded is not None:
        out["excluded"] = excluded
    return out


def metrics_record(inputs: RetrievalInputs, query: Part, references: Sequence[Part],
                   reid: bool, meta: Mapping[str, str], knn: str = "exact") -> dict:
    """Everything one (model, evaluation, exclusion) contributes to the tables and figures
    (``knn``: config ``evaluation.knn``, see overlearning.evaluate.metrics)."""
    retrieval = evaluate_retrieval(inputs, knn)
    record: dict[str, Any] = dict(meta)
    record["queries"] = _part_summary(query, len(inputs.queries), None)
    record["references"] = [
        _part_summary(part, int((inputs.part_of == i).sum()),
                      int(((inputs.part_of == i) & ~inputs.kept).sum()))
        for i, part in enumerate(references)
    ]
    record["excluded_references"] = int((~inputs.kept).sum())
    record["retrieval"] = retrieval.study.summary()
    record["retrieval_indexed"] = retrieval.indexed.summary()
    if reid:
        q, g = inputs.queries, inputs.references
        study, indexed = reid_protocol(q.embeddings, q.labels, q.cameras,
                                       g.embeddings, g.labels, g.cameras, inputs.kept)
        record["reid"] = study.summary()
        record["reid_indexed"] = indexed.summary()
        record["roc"] = pair_similarity_roc(q.embeddings, q.labels, q.cameras,
                                            g.embeddings, g.labels, g.cameras, inputs.kept)
    return record


def write_metrics(out: Path | str, query: Part, references: Sequence[Part], reid: bool,
                  meta: Mapping[str, str], knn: str = "exact") -> dict:
    inputs = load_retrieval_inputs(query, references)
    if reid and (np.any(inputs.self_index >= 0)):
        raise ValueError("the re-ID protocol needs queries that are not in the gallery")
    record = metrics_record(inputs, query, references, reid, meta, knn)
    write_json(out, record)
    return record

"""Metrics of raw queries against an index that holds anonymised copies of the query set.

The third safeguard (overlearning.safeguards.anonymise) writes the copies; this module scores
them with the same evaluation as every other metrics file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from overlearning.core.errors import WorkflowInputError
from overlearning.evaluate.attackers import AttackerSettings
from overlearning.evaluate.item_lists import SharedLists
from overlearning.evaluate.metrics_file import write_record
from overlearning.evaluate.retrieval_inputs import Part, RetrievalInputs, load_retrieval_inputs


def mark_query_copies(inputs: RetrievalInputs, copy_parts: Sequence[int]) -> RetrievalInputs:
    """Treat each query's anonymised copy (same file name in a copy part) as the query itself.

    The raw evaluations never let a query retrieve itself. Against an anonymised copy of the
    query set the query's own crop is a different vector, but still the same picture: left
    in the ranking it would be an easy extra relevant item (and an identical one for every
    unchanged crop), so it is dropped from the query's ranking and from its R, as the raw
    query itself is. Every query must find its copy, otherwise the sets do not match.
    """
    queries = inputs.queries.files
    self_index = inputs.self_index.copy()
    for part in copy_parts:
        positions = np.flatnonzero(inputs.part_of == part)
        names = inputs.references.files[positions]
        order = np.argsort(names, kind="stable")
        ordered = names[order]
        if len(ordered):
            pos = np.minimum(np.searchsorted(ordered, queries), len(ordered) - 1)
            found = ordered[pos] == queries
        else:
            pos, found = np.zeros(len(queries), dtype=np.int64), np.zeros(len(queries), dtype=bool)
        if not found.all():
            missing = queries[~found]
            raise WorkflowInputError(
                missing[0], f"{len(missing)} queries have no copy in the anonymised reference "
                            "set (was it made from another version of the query set?)")
        self_index = np.where(self_index < 0, positions[order[pos]], self_index)
    return dataclasses.replace(inputs, self_index=self_index)


def write_anonymised_metrics(out: Path | str, query: Part, references: Sequence[Part],
                             query_copies: Sequence[Path | str], reid: bool,
                             meta: Mapping[str, str], knn: str = "exact",
                             attackers: AttackerSettings | None = None, top_k: int = 0,
                             shared: SharedLists | None = None) -> dict:
    """The evaluation's metrics record (overlearning.evaluate.metrics_file) for raw queries against
    reference parts of which ``query_copies`` are anonymised copies of the query set."""
    copies = {os.path.realpath(p) for p in query_copies}
    parts = [i for i, part in enumerate(references) if os.path.realpath(part.path) in copies]
    listed = {os.path.realpath(references[i].path) for i in parts}
    if listed != copies:
        raise WorkflowInputError(sorted(copies - listed)[0], "query copy is not a reference part")
    inputs = mark_query_copies(load_retrieval_inputs(query, references), parts)
    if reid and np.any(inputs.self_index >= 0):
        raise ValueError("the re-ID protocol needs queries that are not in the gallery")
    return write_record(out, inputs, query, references, reid, meta, knn, attackers, top_k,
                        shared)

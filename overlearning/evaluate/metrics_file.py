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
import pandas as pd

from overlearning.core.atomic import write_json
from overlearning.evaluate.attackers import AttackerSettings, Search, build_search
from overlearning.evaluate.evidence import evidence_path, write_evidence
from overlearning.evaluate.evidence_rows import evidence_frame, first_match_in
from overlearning.evaluate.item_lists import SharedLists
from overlearning.evaluate.metrics import evaluate_retrieval
from overlearning.evaluate.reid_protocol import pair_similarity_roc, reid_protocol
from overlearning.evaluate.retrieval_inputs import Part, RetrievalInputs, load_retrieval_inputs


def _part_summary(part: Part, count: int, excluded: int | None) -> dict:
    out: dict[str, Any] = {"set": Path(part.path).stem, "subset": part.subset, "count": count}
    if excluded is not None:
        out["excluded"] = excluded
    return out


def _attack(search: Search, inputs: RetrievalInputs, reid: bool, knn: str,
            top_k: int, reference_sets: list[str], params: dict) -> tuple[dict, pd.DataFrame]:
    """One attacker's sections of the metrics record and its per-query rows."""
    plain = search.name == "plain"
    search.min_width = top_k
    if reid:
        search.keep_dense()
    ranker = None if plain else search.ranking
    retrieval = evaluate_retrieval(inputs, knn if plain else "exact", ranker)
    part: dict[str, Any] = {}
    if not plain:
        part["params"] = params
    part["retrieval"] = retrieval.study.summary()
    part["retrieval_indexed"] = retrieval.indexed.summary()
    reid_ap = None
    first_match = first_match_in(retrieval.ranking, inputs)
    if reid:
        q, g = inputs.queries, inputs.references
        similarity = search.similarity()
        study, indexed = reid_protocol(search.queries, q.labels, q.cameras,
                                       g.embeddings, g.labels, g.cameras, inputs.kept,
                                       similarity=similarity)
        part["reid"] = study.summary()
        part["reid_indexed"] = indexed.summary()
        part["roc"] = pair_similarity_roc(search.queries, q.labels, q.cameras,
                                          g.embeddings, g.labels, g.cameras, inputs.kept,
                                          similarity=similarity)
        reid_ap, first_match = study.average_precision, study.first_match
    shown = search.ranking(top_k) if top_k > 0 else np.zeros((len(inputs.queries), 0), int)
    frame = evidence_frame(search.name, inputs, shown, search.scores(shown), search.score_kind,
                           retrieval.study.average_precision_at_r, first_match, reid_ap,
                           reference_sets)
    return part, frame


def metrics_record(inputs: RetrievalInputs, query: Part, references: Sequence[Part],
                   reid: bool, meta: Mapping[str, str], knn: str = "exact",
                   attackers: AttackerSettings | None = None, top_k: int = 0,
                   evidence: list | None = None, shared: SharedLists | None = None) -> dict:
    """Everything one (model, evaluation, exclusion) contributes to the tables and figures
    (``knn``: config ``evaluation.knn``, see overlearning.evaluate.metrics). The plain
    search fills the top level; every other attacker its own section under
    ``attackers``. ``evidence``, when given, receives each attacker's per-query rows
    (``top_k`` references each). ``shared``: neighbour lists of the evaluation's group
    (overlearning.evaluate.item_lists; same record, computed once for the group)."""
    settings = attackers or AttackerSettings()
    record: dict[str, Any] = dict(meta)
    record["queries"] = _part_summary(query, len(inputs.queries), None)
    record["references"] = [
        _part_summary(part, int((inputs.part_of == i).sum()),
                      int(((inputs.part_of == i) & ~inputs.kept).sum()))
        for i, part in enumerate(references)
    ]
    record["excluded_references"] = int((~inputs.kept).sum())
    sets = [Path(part.path).stem for part in references]
    for name in settings.names:
        part, frame = _attack(build_search(name, inputs, settings, shared=shared), inputs,
                              reid, knn, top_k, sets, settings.parameters(name))
        if name == "plain":
            record.update(part)
        else:
            record.setdefault("attackers", {})[name] = part
            # The JSON's keys are sorted: the config's order of the attackers is kept here.
            record.setdefault("attacker_order", []).append(name)
        if evidence is not None:
            evidence.append(frame)
    return record


def write_metrics(out: Path | str, query: Part, references: Sequence[Part], reid: bool,
                  meta: Mapping[str, str], knn: str = "exact",
                  attackers: AttackerSettings | None = None, top_k: int = 0,
                  shared: SharedLists | None = None) -> dict:
    """The metrics JSON and, beside it, the per-query evidence (evaluate/evidence.py)."""
    inputs = load_retrieval_inputs(query, references)
    if reid and (np.any(inputs.self_index >= 0)):
        raise ValueError("the re-ID protocol needs queries that are not in the gallery")
    return write_record(out, inputs, query, references, reid, meta, knn, attackers, top_k,
                        shared)


def write_record(out: Path | str, inputs: RetrievalInputs, query: Part,
                 references: Sequence[Part], reid: bool, meta: Mapping[str, str], knn: str,
                 attackers: AttackerSettings | None, top_k: int,
                 shared: SharedLists | None = None) -> dict:
    frames: list = []
    record = metrics_record(inputs, query, references, reid, meta, knn, attackers, top_k,
                            frames, shared)
    write_evidence(evidence_path(out), frames)
    write_json(out, record)
    return record

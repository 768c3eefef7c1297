"""One retrieval problem: a query set against a reference list built from cached embeddings.

A *part* is one embedding file, optionally restricted to persons or non-persons, optionally
with an index-exclusion JSON (``{category: [file names]}``) that removes items of that part
from the search index. Queries are never removed: exclusion only changes what can be found.
A query that is itself a reference (the same file in the same embedding set) never
retrieves itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overlearning.core.errors import WorkflowInputError
from overlearning.evaluate.embeddings import EmbeddingSet, Subset, concatenate, load_embedding_set
from overlearning.safeguards.categories import CATEGORIES, EXCLUDED_CATEGORIES, read_exclusion_lists

KNOWN_CATEGORIES = CATEGORIES
SUBSETS = ("all", "persons", "nonpersons")


@dataclass(frozen=True)
class Part:
    path: Path
    subset: Subset = "all"
    exclusion: Path | None = None
    # An exclusion list that only marks items (the per-query evidence says which retrieved
    # references index exclusion would remove), without removing them.
    marked: Path | None = None


@dataclass(frozen=True)
class RetrievalInputs:
    queries: EmbeddingSet
    references: EmbeddingSet
    kept: np.ndarray        # bool per reference: in the search index
    self_index: np.ndarray  # int per query: its own reference position, -1 if none
    part_of: np.ndarray     # int per reference: which reference part it came from
    listed: np.ndarray | None = None  # bool per reference: on an exclusion or marking list


def load_exclusion(path: Path | str, known_files: Sequence[str]) -> set[str]:
    """File names to leave out of the index; every listed name must belong to the set."""
    lists = read_exclusion_lists(path, known_files)
    return {name for category in EXCLUDED_CATEGORIES for name in lists[category]}


def _listed(part: Part, full: EmbeddingSet, data: EmbeddingSet) -> np.ndarray:
    """Items of the part named by its exclusion or marking list."""
    names: set[str] = set()
    for path in {part.exclusion, part.marked} - {None}:
        names |= load_exclusion(path, full.files.tolist())
    return np.isin(data.files, sorted(names))


def _load_part(part: Part, cache: dict[str, EmbeddingSet]) -> tuple[EmbeddingSet, np.ndarray]:
    key = os.path.realpath(part.path)
    if key not in cache:
        cache[key] = load_embedding_set(part.path)
    full = cache[key]
    if part.subset not in SUBSETS:
        raise ValueError(f"unknown subset {part.subset!r} ({', '.join(SUBSETS)})")
    data = full.subset(part.subset)
    kept = np.ones(len(data), dtype=bool)
    if part.exclusion is not None:
        excluded = load_exclusion(part.exclusion, full.files.tolist())
        kept = ~np.isin(data.files, sorted(excluded))
    return data, kept


def load_retrieval_inputs(query: Part, references: Sequence[Part]) -> RetrievalInputs:
    if not references:
        raise ValueError("at least one reference part is needed")
    cache: dict[str, EmbeddingSet] = {}
    queries, _ = _load_part(Part(query.path, query.subset), cache)
    loaded = [_load_part(part, cache) for part in references]
    listed = np.concatenate([_listed(part, cache[os.path.realpath(part.path)], data)
                             for part, (data, _) in zip(references, loaded, strict=True)])
    refs = concatenate([data for data, _ in loaded])
    kept = np.concatenate([k for _, k in loaded])
    sizes = [len(data) for data, _ in loaded]
    part_of = np.repeat(np.arange(len(references)), sizes)
    if len(queries) and len(refs) and queries.embeddings.shape[1] != refs.embeddings.shape[1]:
        raise WorkflowInputError(query.path, f"query dimension {queries.embeddings.shape[1]} "
                                             f"differs from the references' {refs.embeddings.shape[1]}")

    # A query is its own reference when the same file of the same embedding set is listed.
    self_index = np.full(len(queries), -1, dtype=np.int64)
    query_key = os.path.realpath(query.path)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for i, part in enumerate(references):
        if os.path.realpath(part.path) != query_key:
            continue
        names = loaded[i][0].files
        order = np.argsort(names, kind="stable")
        pos = np.searchsorted(names[order], queries.files)
        pos = np.minimum(pos, max(len(names) - 1, 0))
        found = (len(names) > 0) & (names[order][pos] == queries.files) & (self_index < 0)
        self_index[found] = offsets[i] + order[pos[found]]
    return RetrievalInputs(queries, refs, kept, self_index, part_of, listed)


def part_from_cli(path: str, subset: str, exclusion: str = "-", marked: str = "-") -> Part:
    """``PATH SUBSET [EXCLUSION [MARKED]]`` from a command line; ``-`` means no list."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r} ({', '.join(SUBSETS)})")
    def optional(value: str) -> Path | None:
        return None if value in ("-", "") else Path(value)
    return Part(Path(path), subset, optional(exclusion), optional(marked))  # type: ignore[arg-type]

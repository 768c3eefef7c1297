"""The four categories of an index-exclusion JSON (REFERENCE "Detection, segmentation,
index exclusion"), shared by the stage that writes the lists and the stages that read them.

A light module on purpose: the metrics jobs read exclusion lists without importing the
detection and segmentation stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from overlearning.core.atomic import read_json
from overlearning.core.errors import WorkflowInputError

DETECTED = "Detected Person Exclusion"
UNDETECTED = "Undetected Instance Exclusion"
MISCLASSIFIED_EXCLUSION = "Misclassified Instance Exclusion"
MISCLASSIFIED_INCLUSION = "Misclassified Instance Inclusion"
CATEGORIES = (DETECTED, UNDETECTED, MISCLASSIFIED_EXCLUSION, MISCLASSIFIED_INCLUSION)
# Removed from the search index; the inclusion (a person the detector called something
# else) stays in it: that is the leak the study measures.
EXCLUDED_CATEGORIES = (DETECTED, UNDETECTED, MISCLASSIFIED_EXCLUSION)


def read_exclusion_lists(path: Path | str, known: Iterable[str]) -> dict[str, list[str]]:
    """An exclusion JSON ``{category: [crop names]}`` with every category (absent: empty),
    checked: known categories, lists of names, and only names of the set's crops (a list
    made for other crops is stale and would silently exclude nothing)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise WorkflowInputError(path, "exclusion JSON must be an object {category: [file names]}")
    unknown = sorted(set(data) - set(CATEGORIES))
    if unknown:
        raise WorkflowInputError(path, f"unknown exclusion categories {unknown} "
                                       f"(known: {list(CATEGORIES)})")
    known = set(known)
    for category, names in data.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise WorkflowInputError(path, f"category {category!r} must list file names")
        strangers = sorted(set(names) - known)
        if strangers:
            raise WorkflowInputError(
                path, f"{len(strangers)} name(s) under {category!r} are not crops of the set "
                      f"(stale exclusion?), first: {strangers[:3]}; exclusion and evaluation "
                      f"must name the same crops")
    return {category: list(data.get(category, [])) for category in CATEGORIES}

"""Whether a finished run's rankings mean something (issue 22 part 4), from its own files.

For every metrics file (one model, evaluation and exclusion state) the evaluation's
embeddings are reloaded (the plan's query and reference parts are in the provenance file
beside it), and three things are measured in float64:

- the similarity band of each setting: the smallest and largest query-reference cosine
  similarity over all of its evaluations (a collapsed model has a band near 0);
- near ties: queries whose ranking, within the positions the metrics read (the first k),
  has two neighbours closer than ``TIE`` in similarity; "deciding" ties are those between a
  relevant and an irrelevant reference, the only ones whose order can change a metric;
- agreement: MAP and MAP@R (both readings of R: every reference with the label, and the
  kept ones only) recomputed here from a float64 ranking, against the workflow's numbers.

The recomputation follows the definitions (pytorch-metric-learning's MAP and MAP@R over
the first k = max R neighbours; a query never retrieves itself; excluded references are
not searched) with numpy alone; only the assembling of the inputs (which files, subsets
and exclusion lists) is the library's.

``python -m tests.ranking_health RUN_DIR`` prints the same report for any finished run.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from overlearning.evaluate.retrieval_inputs import load_retrieval_inputs, part_from_cli

TIE = 1e-6        # similarities closer than this are a near tie
AGREE = 1e-6      # a recomputed metric agrees when it is this close to the workflow's
METRICS = ("mean_average_precision", "mean_average_precision_at_r")


@dataclass
class Evaluation:
    setting: str
    name: str                  # <evaluation>/<exclusion>
    low: float                 # smallest similarity of a query to a reference
    high: float
    tied_queries: int          # queries with a near tie among their first k neighbours
    deciding_queries: int      # ... between a relevant and an irrelevant reference
    differences: dict[str, float] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return all(d <= AGREE for d in self.differences.values())


def _unit64(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _average_precisions(hits: np.ndarray, relevant: int, k: int) -> tuple[float, float]:
    """(AP, AP@R) of one query: precision at each hit among the first k (first R), over R."""
    window = hits[:k]
    precision = np.cumsum(window) / np.arange(1, len(window) + 1)
    scored = precision * window
    return float(scored.sum() / relevant), float(scored[:relevant].sum() / relevant)


def measure(metrics_json: Path, cwd: Path) -> Evaluation:
    """One metrics file, its inputs reloaded relative to ``cwd`` (the run's directory)."""
    record = json.loads(metrics_json.read_text())
    provenance = json.loads(metrics_json.with_suffix(".provenance.json").read_text())["extra"]
    def rel(spec: list[str]) -> list[str]:  # [npz, subset] or [npz, subset, exclusion or -]
        return [str(cwd / spec[0]), spec[1], *(s if s == "-" else str(cwd / s) for s in spec[2:])]

    inputs = load_retrieval_inputs(part_from_cli(*rel(provenance["queries"])),
                                   [part_from_cli(*rel(p)) for p in provenance["references"]])
    q, r = inputs.queries, inputs.references
    sims = _unit64(q.embeddings) @ _unit64(r.embeddings).T
    searchable = np.broadcast_to(inputs.kept, sims.shape).copy()
    own = inputs.self_index >= 0
    searchable[np.flatnonzero(own), inputs.self_index[own]] = False
    same = q.labels[:, None] == r.labels[None, :]
    not_self = np.ones_like(same)
    not_self[np.flatnonzero(own), inputs.self_index[own]] = False
    r_all = (same & not_self).sum(1)
    r_kept = (same & searchable).sum(1)
    readings = {"retrieval": r_all, "retrieval_indexed": r_kept}
    # Each reading scores the first max-R neighbours of its own R (PML's max bin count).
    cut = {name: int(counts.max(initial=0)) for name, counts in readings.items()}
    k = max(cut.values())
    values = {f"{reading}.{m}": [] for reading in ("retrieval", "retrieval_indexed")
              for m in METRICS}
    tied = deciding = 0
    for i in range(len(q.labels)):
        cols = np.flatnonzero(searchable[i])
        order = cols[np.lexsort((cols, -sims[i, cols]))]  # by similarity, then index
        top = order[:k]
        gaps = np.abs(np.diff(sims[i, top])) < TIE
        tied += bool(gaps.any())
        deciding += bool((gaps & (same[i, top][1:] != same[i, top][:-1])).any())
        hits = same[i, order]
        for reading, counts in readings.items():
            if counts[i] > 0:
                ap, ap_r = _average_precisions(hits, int(counts[i]), cut[reading])
                values[f"{reading}.mean_average_precision"].append(ap)
                values[f"{reading}.mean_average_precision_at_r"].append(ap_r)
    pairs = sims[searchable]
    result = Evaluation(record["setting"], f"{record['evaluation']}/{record['exclusion']}",
                        float(pairs.min()) if pairs.size else float("nan"),
                        float(pairs.max()) if pairs.size else float("nan"), tied, deciding)
    for key, found in values.items():
        reading, metric = key.split(".")
        theirs = record[reading][metric]
        if theirs is None and not found:
            continue
        result.differences[key] = abs(float(np.mean(found)) - float(theirs))
    return result


@dataclass
class Health:
    evaluations: list[Evaluation]

    def bands(self) -> dict[str, tuple[float, float]]:
        """Per setting: (lowest, highest) similarity over all of its evaluations."""
        out: dict[str, tuple[float, float]] = {}
        for e in self.evaluations:
            low, high = out.get(e.setting, (np.inf, -np.inf))
            out[e.setting] = (min(low, e.low), max(high, e.high))
        return dict(sorted(out.items()))

    def report(self) -> str:
        n = len(self.evaluations)
        tied = sum(e.tied_queries > 0 for e in self.evaluations)
        deciding = sum(e.deciding_queries > 0 for e in self.evaluations)
        agree = sum(e.agrees for e in self.evaluations)
        lines = [f"{n} evaluations; near ties (< {TIE:g}) within the scored neighbours: "
                 f"{tied} evaluations ({deciding} with a tie between a relevant and an "
                 f"irrelevant reference); float64 metrics agree to {AGREE:g}: {agree}/{n}"]
        for setting, (low, high) in self.bands().items():
            lines.append(f"  {setting}: similarities in [{low:.6f}, {high:.6f}], band "
                         f"{high - low:.6f}")
        worst = sorted(self.evaluations, key=lambda e: -max(e.differences.values(), default=0))
        for e in [e for e in worst if not e.agrees][:5]:
            lines.append(f"  differs: {e.setting} {e.name} "
                         f"{max(e.differences.values()):.2e}")
        return "\n".join(lines)


def measure_run(run: Path) -> Health:
    """Every (non-anonymised) metrics file of a finished demo run in ``run``."""
    files = sorted(p for p in (run / "demo-run" / "results" / "metrics").glob("*/*/*.json")
                   if not p.name.endswith(".provenance.json") and not p.name.startswith("anon_"))
    return Health([measure(path, run) for path in files])


if __name__ == "__main__":
    print(measure_run(Path(sys.argv[1])).report())

"""What each of the authors' options (docs/evaluation.md, "Differences from the study")
changes, measured on a finished run's files without running any rule.

    python bench/fidelity_effects.py --results demo-run/results --data demo-run/data \
        --settings ms confusion --person-set market1501 --out DIR   ->   DIR/fidelity.json

- ROC: the former 2,000-bin histogram AUC against the exact one, with the similarity range,
  fast-reid's TPR@FPR and mINP (evaluate/reid_protocol.py);
- ``evaluation.knn``: MAP and MAP@R of the person and non-person evaluations with index
  exclusion, exact against the authors' k-NN (evaluate/metrics.py);
- ``exclusion.matching``: the instances of ``vis_test`` excluded under one matching rule
  only (safeguards/exclusion.py), recomputed from the run's detections and masks.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import write_result  # noqa: E402

from overlearning.evaluate.embeddings import load_embedding_set  # noqa: E402
from overlearning.evaluate.metrics import evaluate_retrieval  # noqa: E402
from overlearning.evaluate.reid_protocol import (  # noqa: E402
    pair_scores,
    pair_similarity_roc,
    reid_protocol,
)
from overlearning.evaluate.retrieval_inputs import Part, load_retrieval_inputs  # noqa: E402
from overlearning.safeguards.exclusion import ExclusionSettings, run_vis_exclusion  # noqa: E402


def histogram_auc(scores: np.ndarray, same: np.ndarray, bins: int = 2000) -> float:
    """The former ROC: similarities binned on [-1, 1], trapezoid AUC over the bin edges."""
    idx = np.minimum(((np.clip(scores, -1, 1) + 1.0) * (bins / 2.0)).astype(np.int64), bins - 1)
    pos = np.bincount(idx[same], minlength=bins)[::-1].cumsum()
    neg = np.bincount(idx[~same], minlength=bins)[::-1].cumsum()
    tpr = np.concatenate([[0.0], pos / max(pos[-1], 1)])
    fpr = np.concatenate([[0.0], neg / max(neg[-1], 1)])
    return float(np.trapezoid(tpr, fpr))


def roc_effects(results: Path, setting: str, person_set: str) -> dict:
    emb = results / "embeddings" / setting
    q = load_embedding_set(emb / f"{person_set}_query.npz")
    g = load_embedding_set(emb / f"{person_set}_gallery.npz")
    out = {}
    exclusion = results / "exclusion" / f"{person_set}.json"
    for row in ("none", "excluded"):
        part = Part(emb / f"{person_set}_gallery.npz", "all", exclusion if row == "excluded" else None)
        kept = load_retrieval_inputs(Part(emb / f"{person_set}_query.npz"), [part]).kept
        scores, same = pair_scores(q.embeddings, q.labels, q.cameras, g.embeddings, g.labels,
                                   g.cameras, kept)
        roc = pair_similarity_roc(q.embeddings, q.labels, q.cameras, g.embeddings, g.labels,
                                  g.cameras, kept)
        study, indexed = reid_protocol(q.embeddings, q.labels, q.cameras, g.embeddings,
                                       g.labels, g.cameras, kept)
        out[row] = {
            "similarity_range": [float(scores.min()), float(scores.max())],
            "histogram_auc": round(histogram_auc(scores, same), 6),
            "exact_auc": roc["auc"],
            **{k: v for k, v in roc.items() if k.startswith("tpr_at_fpr_")},
            "mAP": study.summary()["mAP"], "mINP": study.summary()["mINP"],
            "mINP_indexed": indexed.summary()["mINP"],
        }
    return out


def knn_effects(results: Path, setting: str) -> dict:
    emb = results / "embeddings" / setting
    vis, ovis = emb / "vis_test.npz", emb / "ovis_test.npz"
    exclusion = results / "exclusion" / "vis_test.json"
    specs = {
        "person": (Part(vis, "persons"), [Part(vis, "all", exclusion), Part(ovis)]),
        "nonperson": (Part(vis, "nonpersons"), [Part(vis, "nonpersons", exclusion), Part(ovis)]),
    }
    out = {}
    for name, (query, refs) in specs.items():
        inputs = load_retrieval_inputs(query, refs)
        exact = evaluate_retrieval(inputs).study.summary()
        authors = evaluate_retrieval(inputs, "authors").study.summary()
        out[name] = {
            "excluded_references": int((~inputs.kept).sum()), "k": exact["k"],
            **{f"{m}_{which}": summary[m] for m in ("mean_average_precision",
                                                    "mean_average_precision_at_r")
               for which, summary in (("exact", exact), ("authors", authors))},
        }
    return out


def matching_effects(results: Path, data: Path, person_category: int, person_label: str) -> dict:
    split = data / "vis" / "test"
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_vis_exclusion(
            split / "fg_instances.json", split / "fg_instances_cropped.json",
            split / "instances.json", results / "detections" / "vis_test.json",
            results / "masks" / "vis_test.json", person_category,
            ExclusionSettings(person_label=person_label), Path(tmp) / "x.json",
            Path(tmp) / "x.summary.json")
    keys = ("instances", "persons", "matched", "excluded", "excluded_only_by_thresholded",
            "excluded_only_by_authors")
    return {k: summary[k] for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", required=True)
    parser.add_argument("--person-set", default="market1501")
    parser.add_argument("--person-category", type=int, default=26, help="preparation.vis_person_category")
    parser.add_argument("--person-label", default="person", help="detection.person_label")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = {
        "roc": {s: roc_effects(args.results, s, args.person_set) for s in args.settings},
        "knn": {s: knn_effects(args.results, s) for s in args.settings},
        "matching": matching_effects(args.results, args.data, args.person_category,
                                     args.person_label),
    }
    write_result(args.out, "fidelity", report)
    print(json.dumps(report, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

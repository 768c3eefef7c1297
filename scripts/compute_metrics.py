"""Metrics of one trained model on a list of evaluations (the `metrics` and
`metrics_anonymised` rules).

--plan is a JSON list; each entry names one evaluation: ``query`` [NPZ, SUBSET],
``references`` [[NPZ, SUBSET, EXCLUSION JSON or "-", MARKING JSON or "-"], ...] (the
marking list only flags items in the per-query evidence), ``query_copies`` (reference
NPZs that are anonymised copies of the query set: each query's copy counts as the query
itself), ``reid`` (also the re-ID protocol and the pair ROC), the table labels
``setting``, ``evaluation``, ``exclusion`` and ``out``. Each evaluation writes MAP and
MAP@R (pytorch-metric-learning's definitions), for every attacker of --attackers, a
provenance file and the per-query evidence (``<stem>.queries.csv.gz``) beside its JSON.
Evaluations that read the same embedding files share the k-reciprocal attacker's neighbour
lists (overlearning.evaluate.item_lists): computed once per group, same records.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True)
    parser.add_settings("--plan", "list of evaluations")
    parser.add_argument("--knn", choices=("exact", "authors"), default="exact",
                        help="config evaluation.knn: exact, or the authors' k-NN (k - 1 cut)")
    parser.add_settings("--attackers", "attackers and their parameters "
                        "({'attackers': [...], 'k_reciprocal': {...}, 'alpha_qe': {...}})")
    parser.add_argument("--top-k", type=int, default=10,
                        help="references per query in the per-query evidence file")
    args = parser.parse(argv)

    from overlearning.evaluate.anonymised import write_anonymised_metrics
    from overlearning.evaluate.attackers import AttackerSettings
    from overlearning.evaluate.embeddings import load_embedding_set
    from overlearning.evaluate.item_lists import shared_by_group
    from overlearning.evaluate.metrics_file import write_metrics
    from overlearning.evaluate.ranking import l2_normalise, set_threads
    from overlearning.evaluate.retrieval_inputs import part_from_cli
    from overlearning.workflow.provenance import write_provenance

    set_threads(args.threads)
    attackers = AttackerSettings.from_settings(args.attackers)
    shared = [None] * len(args.plan)
    if "k_reciprocal" in attackers.names:
        files = [[os.path.realpath(path) for path in
                  (job["query"][0], *(spec[0] for spec in job["references"]))]
                 for job in args.plan]
        shared = shared_by_group(
            files, lambda path: l2_normalise(load_embedding_set(path).embeddings))
    last_use = {id(s): i for i, s in enumerate(shared) if s is not None}
    # One bar over the evaluations; each also prints its summary line when done.
    for i, job in enumerate(tqdm(args.plan, desc="evaluations", unit="eval", mininterval=2.0)):
        query = part_from_cli(*job["query"])
        references = [part_from_cli(*spec) for spec in job["references"]]
        meta = {k: job[k] for k in ("setting", "evaluation", "exclusion")}
        copies = job.get("query_copies") or []
        if copies:
            record = write_anonymised_metrics(job["out"], query, references, copies,
                                              job["reid"], meta, args.knn, attackers, args.top_k,
                                              shared[i])
        else:
            record = write_metrics(job["out"], query, references, job["reid"], meta, args.knn,
                                   attackers, args.top_k, shared[i])
        group = shared[i]
        if group is not None and last_use[id(group)] == i:
            print(f"shared neighbour lists ({group.label}): {group.derived} items derived, "
                  f"{group.recomputed} computed directly", file=sys.stderr)
            shared = [None if s is group else s for s in shared]
        # The config hash comes from the workflow's environment (provenance.CONFIG_HASH_ENV).
        write_provenance(Path(job["out"]),
                         extra={"queries": job["query"], "references": job["references"],
                          "query_copies": copies})
        summary = {k: record[k] for k in record if k.startswith(("retrieval", "reid"))}
        print(f"{job['out']}: {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

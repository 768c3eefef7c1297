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
"""

from __future__ import annotations

import json
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
    from overlearning.evaluate.metrics_file import write_metrics
    from overlearning.evaluate.ranking import set_threads
    from overlearning.evaluate.retrieval_inputs import part_from_cli
    from overlearning.workflow.provenance import write_provenance

    set_threads(args.threads)
    attackers = AttackerSettings.from_settings(args.attackers)
    # One bar over the evaluations; each also prints its summary line when done.
    for job in tqdm(args.plan, desc="evaluations", unit="eval", mininterval=2.0):
        query = part_from_cli(*job["query"])
        references = [part_from_cli(*spec) for spec in job["references"]]
        meta = {k: job[k] for k in ("setting", "evaluation", "exclusion")}
        copies = job.get("query_copies") or []
        if copies:
            record = write_anonymised_metrics(job["out"], query, references, copies,
                                              job["reid"], meta, args.knn, attackers, args.top_k)
        else:
            record = write_metrics(job["out"], query, references, job["reid"], meta, args.knn,
                                   attackers, args.top_k)
        # The config hash comes from the workflow's environment (provenance.CONFIG_HASH_ENV).
        write_provenance(Path(job["out"]),
                         extra={"queries": job["query"], "references": job["references"],
                          "query_copies": copies})
        summary = {k: record[k] for k in record if k.startswith(("retrieval", "reid"))}
        print(f"{job['out']}: {json.dumps(summary, sort_keys=True)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One trial worker of a setting's hyper-parameter search (the `tune_worker` rule).

Joins the setting's shared Optuna study (journal file storage in --work-dir), runs trials
until the study has all of its trials started, resuming an interrupted trial from its
per-epoch checkpoint, and writes --record (the trials it ran). Runs with hub access
switched off.
"""

from __future__ import annotations

import sys
from pathlib import Path

from train_job_args import train_job_from_args, train_job_parser

from overlearning.workflow.cli import report


def main(argv: list[str] | None = None) -> int:
    parser = train_job_parser(__doc__)
    parser.add_settings("--tuning", "config tuning.* (trials, epochs_per_trial, seed, space)")
    parser.add_argument("--work-dir", required=True, help="where the live study is kept")
    parser.add_argument("--worker", required=True, help="this worker's index")
    parser.add_argument("--record", required=True, help="JSON file: the trials run here")
    args = parser.parse(argv)
    from overlearning.train.tuning import run_worker

    job = train_job_from_args(args)
    summary = run_worker(job, args.tuning, Path(args.work_dir), args.worker, Path(args.record))
    report({"worker": summary["worker"], "trials": len(summary["trials"])})
    return 0


if __name__ == "__main__":
    sys.exit(main())

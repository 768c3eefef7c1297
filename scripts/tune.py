"""Search a loss setting's hyper-parameters with Optuna (the `tune` rule).

Resumes the study left by an interrupted job. Runs with hub access switched off.
"""

from __future__ import annotations

import sys
from pathlib import Path

from train_job_args import train_job_from_args, train_job_parser

from overlearning.workflow.cli import report


def main(argv: list[str] | None = None) -> int:
    parser = train_job_parser(__doc__)
    parser.add_settings("--tuning", "config tuning.*")
    parser.add_argument("--work-dir", required=True, help="where the live study is kept")
    parser.add_argument("--out", required=True, help="folder for study.sqlite, trials.csv, best.json")
    args = parser.parse(argv)
    from overlearning.train.tuning import tune_setting

    job = train_job_from_args(args)
    best = tune_setting(job, args.tuning, Path(args.work_dir), Path(args.out))
    report(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Search a loss setting's hyper-parameters with Optuna (the `tune` rule).

Resumes the study left by an interrupted job. Runs with hub access switched off.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train_job_args import add_train_job_arguments, train_job_from_args

from overlearning.models.cache import go_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_job_arguments(parser)
    parser.add_argument("--tuning", required=True, help="config tuning.* (JSON)")
    parser.add_argument("--work-dir", required=True, help="where the live study is kept")
    parser.add_argument("--out", required=True, help="folder for study.sqlite, trials.csv, best.json")
    args = parser.parse_args(argv)
    go_offline(args.cache)
    from overlearning.train.tuning import tune_setting

    job = train_job_from_args(args)
    best = tune_setting(job, json.loads(args.tuning), Path(args.work_dir), Path(args.out))
    print(json.dumps(best, sort_keys=True), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

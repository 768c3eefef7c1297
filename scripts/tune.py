"""Search a loss setting's hyper-parameters with Optuna (the `tune` rule).

Resumes the study left by an interrupted job. Runs with hub access switched off.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from overlearning.weights import go_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setting", required=True, help="name of the loss setting")
    parser.add_argument("--params", required=True, help="config training.settings.<setting> (JSON)")
    parser.add_argument("--training", required=True, help="config training.* (JSON)")
    parser.add_argument("--tuning", required=True, help="config tuning.* (JSON)")
    parser.add_argument("--trunk", required=True, help="config models.<trunk> (JSON)")
    parser.add_argument("--cache", required=True, help="pretrained weights cache")
    parser.add_argument("--train-dir", required=True, help="{DATA}/vis/train")
    parser.add_argument("--valid-dir", required=True, help="{DATA}/vis/valid")
    parser.add_argument("--person-category", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", required=True, help="where the live study is kept")
    parser.add_argument("--out", required=True, help="folder for study.sqlite, trials.csv, best.json")
    args = parser.parse_args(argv)
    go_offline(args.cache)
    from overlearning.training import TrainJob
    from overlearning.tuning import tune_setting

    job = TrainJob(
        setting=args.setting, params=json.loads(args.params), training=json.loads(args.training),
        trunk_cfg=json.loads(args.trunk), cache=Path(args.cache),
        train_dir=Path(args.train_dir), valid_dir=Path(args.valid_dir),
        person_category=args.person_category, seed=args.seed, threads=args.threads,
    )
    best = tune_setting(job, json.loads(args.tuning), Path(args.work_dir), Path(args.out))
    print(json.dumps(best, sort_keys=True), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

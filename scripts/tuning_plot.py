"""Tuning trials of one setting as a figure: validation person vs non-person MAP@R per
Optuna trial, the chosen trial starred (the `tuning_report` rule)."""

from __future__ import annotations

import argparse
import csv
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", required=True, help="trials.csv of the tune rule")
    parser.add_argument("--best", required=True, help="best.json of the tune rule")
    parser.add_argument("--setting", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    from overlearning.core.atomic import read_json
    from overlearning.core.errors import WorkflowInputError
    from overlearning.evaluate.figures import tuning_trials_figure

    try:
        with open(args.trials, newline="") as handle:
            trials = list(csv.DictReader(handle))
        missing = {"number", "nonperson_map_at_r", "person_map_at_r"} - set(trials[0] if trials else {})
        if missing:
            raise WorkflowInputError(args.trials, f"no column {', '.join(sorted(missing))}")
        best = read_json(args.best).get("trial")
        tuning_trials_figure(trials, None if best is None else int(best), args.out, args.setting)
    except WorkflowInputError as error:
        print(f"tuning_plot: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

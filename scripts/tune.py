"""Close a setting's hyper-parameter search (the `tune` rule): check that the shared study
has every trial finished, choose the trial, write study.journal, trials.csv, best.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

from overlearning.workflow.cli import ScriptParser, report


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--setting", required=True, help="name of the loss setting")
    parser.add_argument("--trials", type=int, required=True, help="config tuning.trials")
    parser.add_argument("--records", nargs="+", required=True,
                        help="the tune_worker jobs' records (they name the study)")
    parser.add_argument("--out", required=True,
                        help="folder for study.journal, trials.csv, best.json")
    args = parser.parse(argv)
    from overlearning.train.study import finish_study

    best = finish_study([Path(p) for p in args.records], args.trials, args.setting,
                        Path(args.out))
    report(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())

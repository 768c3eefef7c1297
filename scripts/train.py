"""Train one loss setting and write its model folder (the `train` rule).

Resumes from the setting's checkpoint when a previous job was interrupted. With
--processes N > 1 it restarts itself under torchrun, one process per GPU of the job.
Runs with hub access switched off: every weight comes from the weights cache.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from train_job_args import train_job_from_args, train_job_parser


def relaunch_under_torchrun(processes: int, argv: list[str]) -> None:
    """Replace this process by torchrun starting ``processes`` copies of this script."""
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc_per_node={processes}", os.path.abspath(__file__), *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = train_job_parser(__doc__)
    parser.add_argument("--processes", type=int, default=1, help="DDP processes (GPUs)")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--checkpoints", required=True, help="folder of the resumable state")
    parser.add_argument("--tuned", nargs="*", default=[],
                        help="tuning result (best.json) whose values replace the config's")
    args = parser.parse(argv)  # switches hub access off (inherited by torchrun's processes)
    if args.processes > 1 and "LOCAL_RANK" not in os.environ:
        relaunch_under_torchrun(args.processes, argv)
    from overlearning.train.loop import resolve_params, train_setting

    tuned = args.tuned[0] if args.tuned else None
    job = train_job_from_args(args, resolve_params(args.params, tuned))
    train_setting(job, Path(args.out), Path(args.checkpoints), tuned_from=tuned)
    return 0


if __name__ == "__main__":
    sys.exit(main())

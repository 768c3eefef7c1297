"""Check a SLURM run's plan against the cluster before launching it.

    python scripts/preflight.py --profile profiles/slurm [more snakemake arguments]

Runs Snakemake with the given arguments as for the real run, but with
OVERLEARNING_PREFLIGHT=only: the workflow builds the plan, checks it (every job against
its partition's limits, the account, the container image's digest, the weights manifest,
the downloads' checksums, GPU drivers where SLURM reports them: see
overlearning/workflow/preflight.py), prints one table, and stops before submitting
anything. Exits 0 when every check passed, 1 with every problem listed. A real run
(`snakemake --profile profiles/slurm`) runs the same check first and refuses to start on
any problem. Needs only the login environment (Snakemake and the SLURM plugin).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake) if snakemake.exists() else "snakemake", *args,
               # No lock: a launched run in the same folder may be running.
               "--nolock"]
    env = dict(os.environ, OVERLEARNING_PREFLIGHT="only")
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

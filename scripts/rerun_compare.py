"""Rerun the job that makes TARGET (in its container, through your profile) and compare.

    python scripts/rerun_compare.py results/metrics/ms/market1501/none.json -- --profile profiles/slurm
    python scripts/rerun_compare.py results/tables/main.csv -- --sdm apptainer --cores 8

Everything after `--` goes to Snakemake unchanged (profile, config files, cores). The
job's recorded outputs are copied to <keep>/recorded, the job is rerun with --force (only
that job, not its inputs), and every output file is compared byte for byte with its
recorded copy (*.provenance.json sidecars excluded: they name the host and the job).
Exit status 0: identical; 1: something differs (listed); 2: the rerun could not be done.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from overlearning.core.errors import WorkflowInputError
from overlearning.workflow.cli import ScriptParser
from overlearning.workflow.rerun import (
    DEFAULT_EXCLUDE,
    format_report,
    rerun_and_compare,
    write_report,
)

CHECKOUT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = ScriptParser(__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="+", help="output file(s) of the job to rerun")
    parser.add_argument("--snakefile", type=Path, default=CHECKOUT / "Snakefile")
    parser.add_argument("--directory", type=Path, default=Path.cwd(),
                        help="the workflow's working directory (default: here)")
    parser.add_argument("--keep", type=Path,
                        help="where to keep the recorded outputs (default: "
                             "<directory>/.snakemake/rerun-compare)")
    parser.add_argument("--report", type=Path, help="also write the comparison as JSON here")
    parser.add_argument("--exclude", action="append", default=list(DEFAULT_EXCLUDE),
                        help="file name pattern left out of the comparison (repeatable)")
    args = parser.parse(argv)
    local = Path(sys.executable).with_name("snakemake")
    snakemake = [str(local) if local.exists() else (shutil.which("snakemake") or "snakemake"),
                 "-s", str(args.snakefile), *passthrough]
    keep = args.keep or args.directory / ".snakemake" / "rerun-compare"
    try:
        report = rerun_and_compare(args.targets, snakemake, args.directory, keep.resolve(),
                                   exclude=args.exclude)
    except WorkflowInputError as error:
        print(f"rerun_compare: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.report:
        write_report(report, args.report)
    return 0 if report["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())

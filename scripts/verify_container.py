"""Check an Apptainer image (or a local Python) against a lock file; exit 1 on any difference.

    scripts/verify_container.py --image containers/overlearning-gpu.sif
    scripts/verify_container.py --python .venv/bin/python --lock envs/cpu.lock.txt

Reports the image's sha256 (and whether it equals the one containers/build.sh recorded in
<image>.sha256), its base image label against the .def's From:, and every package that is
missing, not locked, or at another version than envs/gpu.lock.txt pins.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from overlearning.core.errors import WorkflowInputError
from overlearning.workflow.cli import ScriptParser
from overlearning.workflow.container_check import format_report, verify


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    subject = parser.add_mutually_exclusive_group(required=True)
    subject.add_argument("--image", help="a .sif file, or a docker:// / oras:// URI")
    subject.add_argument("--python", help="a local interpreter to check instead of an image")
    parser.add_argument("--lock", type=Path, default=Path("envs/gpu.lock.txt"))
    parser.add_argument("--def", dest="definition", type=Path,
                        help="Apptainer definition whose From: the image's base label must equal")
    parser.add_argument("--report", type=Path, help="also write the result as JSON here")
    parser.add_argument("--apptainer", default=os.environ.get("APPTAINER", "apptainer"),
                        help="apptainer (or singularity) command")
    args = parser.parse(argv)
    try:
        result = verify(args.lock, image=args.image, python=args.python,
                        definition=args.definition, apptainer=args.apptainer)
    except WorkflowInputError as error:
        print(f"verify_container: {error}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.report:
        tmp = args.report.with_name(args.report.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, args.report)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

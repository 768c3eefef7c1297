"""Write the four dataset downloads and the MGCAM masks at a fraction of the published counts.

The scale rehearsal's input (`make scale`, config.scale.yaml): the official file names and
layouts, with the published numbers of videos, frames, instances, identities and images
times ``--fraction``, at small pixel sizes (overlearning/demo/scale.py).
"""

from __future__ import annotations

import sys
import time

from overlearning.demo.scale import parse_fraction, write_scale_downloads
from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True)
    parser.add_argument("--out", required=True, help="folder to write the downloads into")
    parser.add_argument("--fraction", required=True, type=parse_fraction,
                        help="share of the published counts, e.g. 1/16, 1/4 or 1")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse(argv)
    start = time.perf_counter()
    for path in write_scale_downloads(args.out, args.fraction, args.seed,
                                      workers=max(1, args.threads)):
        print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    print(f"fraction {args.fraction}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

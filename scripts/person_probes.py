#!/usr/bin/env python3
"""One partial-person probe (torso band or an occlusion half) of a set's masked queries."""

from overlearning.data.probes import make_probe
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__, threads=True, image_format=True)
    parser.add_argument("--queries", required=True, help="foreground_query.zip pack")
    parser.add_argument("--out", required=True, help="probe pack to write (probes/<probe>.zip)")
    parser.add_argument("--probe", required=True,
                        help="torso, upper_half, lower_half, left_half or right_half")
    parser.add_argument("--top", type=float, default=0.4, help="torso: fraction dropped on top")
    parser.add_argument("--bottom", type=float, default=0.575,
                        help="torso: fraction dropped at the bottom")
    args = parser.parse()
    make_probe(args.queries, args.out, args.probe, top=args.top, bottom=args.bottom,
               ext=args.ext, quality=args.quality, threads=args.threads)


if __name__ == "__main__":
    main()

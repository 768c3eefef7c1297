#!/usr/bin/env python3
"""One partial-person probe (torso band or an occlusion half) of a set's masked queries."""

import argparse
import logging

from overlearning.core.image_io import DEFAULT_MAX_IMAGE_PIXELS, set_max_image_pixels
from overlearning.data.probes import make_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", required=True, help="foreground_query folder")
    parser.add_argument("--out", required=True, help="probe folder to write")
    parser.add_argument("--probe", required=True,
                        help="torso, upper_half, lower_half, left_half or right_half")
    parser.add_argument("--top", type=float, default=0.4, help="torso: fraction dropped on top")
    parser.add_argument("--bottom", type=float, default=0.575,
                        help="torso: fraction dropped at the bottom")
    parser.add_argument("--ext", default="jpg")
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="largest width x height read (preparation.max_image_pixels)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_max_image_pixels(args.max_image_pixels)
    make_probe(args.queries, args.out, args.probe, top=args.top, bottom=args.bottom,
               ext=args.ext, quality=args.quality, threads=args.threads)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Foreground crops and crop indexes of one YouTube-VIS split."""

import argparse
import logging

from overlearning.core.image_io import DEFAULT_MAX_IMAGE_PIXELS, set_max_image_pixels
from overlearning.data.crops import make_crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", required=True, help="frame-level instances.json")
    parser.add_argument("--images", required=True, help="JPEGImages root of the frames")
    parser.add_argument("--out-dir", required=True, help="split folder to write into")
    parser.add_argument("--ext", default="jpg")
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="largest width x height read (preparation.max_image_pixels)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_max_image_pixels(args.max_image_pixels)
    make_crops(args.instances, args.images, args.out_dir, ext=args.ext, quality=args.quality,
               threads=args.threads)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Foreground crops of OVIS (distractors), labels offset by the YouTube-VIS object count."""

import argparse
import logging

from overlearning.core.image_io import DEFAULT_MAX_IMAGE_PIXELS, set_max_image_pixels
from overlearning.data.crops import make_crops
from overlearning.data.vis_frames import read_object_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", required=True, help="frame-level OVIS instances.json")
    parser.add_argument("--images", required=True, help="OVIS frame root")
    parser.add_argument("--out-dir", required=True, help="folder to write into")
    parser.add_argument("--vis-objects", required=True,
                        help="objects.json of YouTube-VIS (its object count is the offset)")
    parser.add_argument("--ext", default="jpg")
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="largest width x height read (preparation.max_image_pixels)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_max_image_pixels(args.max_image_pixels)
    make_crops(args.instances, args.images, args.out_dir, ext=args.ext, quality=args.quality,
               threads=args.threads, object_offset=read_object_count(args.vis_objects))


if __name__ == "__main__":
    main()

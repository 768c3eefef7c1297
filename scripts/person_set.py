#!/usr/bin/env python3
"""Mask a person re-ID set's query and gallery images with the MGCAM person masks."""

import argparse
import logging

from overlearning.core.image_io import DEFAULT_MAX_IMAGE_PIXELS, set_max_image_pixels
from overlearning.data.person_sets import prepare_person_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True, help="folder holding query/ and bounding_box_test/")
    parser.add_argument("--masks", required=True, help="folder holding query_seg/ and bounding_box_test_seg/")
    parser.add_argument("--out", required=True, help="person root to write into")
    parser.add_argument("--junk", choices=["drop", "keep"], default="drop",
                        help="images labelled -1 (Market-1501 junk)")
    parser.add_argument("--distractors", choices=["drop", "keep"], default="keep",
                        help="images labelled 0000 (Market-1501 distractors)")
    parser.add_argument("--naming", choices=["cuhk03", "market1501", "any"], default="any",
                        help="official file-name pattern the images must follow")
    parser.add_argument("--ext", default="jpg")
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="largest width x height read (preparation.max_image_pixels)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    set_max_image_pixels(args.max_image_pixels)
    prepare_person_set(args.images, args.masks, args.out, ext=args.ext, quality=args.quality,
                       threads=args.threads, junk=args.junk, distractors=args.distractors,
                       naming=args.naming)


if __name__ == "__main__":
    main()

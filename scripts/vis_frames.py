#!/usr/bin/env python3
"""YouTube-VIS video-level annotations -> frame-level frames.json (+ the object count)."""

import argparse
import logging

from overlearning.data.vis_frames import convert_video_annotations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--annotations", required=True, help="video-level instances.json")
    parser.add_argument("--out", required=True, help="frame-level JSON to write")
    parser.add_argument("--objects-out", required=True,
                        help="JSON with the number of objects (offset of OVIS labels)")
    parser.add_argument("--person-category", type=int, default=None,
                        help="configured person category id; must be named 'person' in the file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    convert_video_annotations(args.annotations, args.out, args.objects_out,
                              person_category=args.person_category)


if __name__ == "__main__":
    main()

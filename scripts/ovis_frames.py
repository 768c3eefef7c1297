#!/usr/bin/env python3
"""OVIS video-level annotations -> frame-level instances.json of the distractor set."""

import argparse
import logging

from overlearning.data.vis_frames import convert_video_annotations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--annotations", required=True, help="annotations_train.json")
    parser.add_argument("--out", required=True, help="frame-level JSON to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    convert_video_annotations(args.annotations, args.out)


if __name__ == "__main__":
    main()

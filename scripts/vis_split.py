#!/usr/bin/env python3
"""Seeded video-level train / valid / test split of the frame-level YouTube-VIS JSON."""

import argparse
import logging

from overlearning.data.vis_split import split_frames_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", required=True, help="frame-level frames.json")
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--cuts", type=float, nargs=2, required=True,
                        help="cut points as fractions of the videos, e.g. 0.8 0.9")
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    split_frames_file(args.frames, {"train": args.train, "valid": args.valid, "test": args.test},
                      args.cuts, args.seed)


if __name__ == "__main__":
    main()

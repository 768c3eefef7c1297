#!/usr/bin/env python3
"""Seeded video-level train / valid / test split of the frame-level YouTube-VIS JSON."""

from overlearning.data.vis_split import split_frames_file
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--frames", required=True, help="frame-level frames.json")
    parser.add_argument("--train", required=True)
    parser.add_argument("--valid", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--cuts", type=float, nargs=2, required=True,
                        help="cut points as fractions of the videos, e.g. 0.8 0.9")
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse()
    split_frames_file(args.frames, {"train": args.train, "valid": args.valid, "test": args.test},
                      args.cuts, args.seed)


if __name__ == "__main__":
    main()

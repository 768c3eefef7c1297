#!/usr/bin/env python3
"""OVIS video-level annotations -> frame-level instances.json of the distractor set."""

from overlearning.data.vis_frames import convert_video_annotations
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--annotations", required=True, help="annotations_train.json")
    parser.add_argument("--out", required=True, help="frame-level JSON to write")
    args = parser.parse()
    convert_video_annotations(args.annotations, args.out)


if __name__ == "__main__":
    main()

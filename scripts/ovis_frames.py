#!/usr/bin/env python3
"""OVIS video-level annotations -> frame-level instances.json of the distractor set."""

from overlearning.data.vis_frames import convert_video_annotations
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--annotations", required=True, help="annotations_train.json")
    parser.add_argument("--out", required=True, help="frame-level JSON to write")
    parser.add_argument("--person-category", type=int, default=None,
                        help="configured person category id; must be named 'person' in the file")
    args = parser.parse()
    convert_video_annotations(args.annotations, args.out,
                              person_category=args.person_category)


if __name__ == "__main__":
    main()

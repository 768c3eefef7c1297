#!/usr/bin/env python3
"""YouTube-VIS video-level annotations -> frame-level frames.json (+ the object count)."""

from overlearning.data.vis_frames import convert_video_annotations
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__)
    parser.add_argument("--annotations", required=True, help="video-level instances.json")
    parser.add_argument("--out", required=True, help="frame-level JSON to write")
    parser.add_argument("--objects-out", required=True,
                        help="JSON with the number of objects (offset of OVIS labels)")
    parser.add_argument("--person-category", type=int, default=None,
                        help="configured person category id; must be named 'person' in the file")
    args = parser.parse()
    convert_video_annotations(args.annotations, args.out, args.objects_out,
                              person_category=args.person_category)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Foreground crops of OVIS (distractors), labels offset by the YouTube-VIS object count."""

from overlearning.data.crops import make_crops
from overlearning.data.vis_frames import read_object_count
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__, threads=True, image_format=True)
    parser.add_argument("--instances", required=True, help="frame-level OVIS instances.json")
    parser.add_argument("--images", required=True, help="OVIS frame root")
    parser.add_argument("--out-dir", required=True, help="folder to write into")
    parser.add_argument("--vis-objects", required=True,
                        help="objects.json of YouTube-VIS (its object count is the offset)")
    args = parser.parse()
    make_crops(args.instances, args.images, args.out_dir, ext=args.ext, quality=args.quality,
               threads=args.threads, object_offset=read_object_count(args.vis_objects))


if __name__ == "__main__":
    main()

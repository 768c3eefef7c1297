#!/usr/bin/env python3
"""Foreground crops and crop indexes of one YouTube-VIS split."""

from overlearning.data.crops import make_crops
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__, threads=True, image_format=True)
    parser.add_argument("--instances", required=True, help="frame-level instances.json")
    parser.add_argument("--images", required=True, help="JPEGImages root of the frames")
    parser.add_argument("--out-dir", required=True, help="split folder to write into")
    args = parser.parse()
    make_crops(args.instances, args.images, args.out_dir, ext=args.ext, quality=args.quality,
               threads=args.threads)


if __name__ == "__main__":
    main()

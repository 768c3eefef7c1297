#!/usr/bin/env python3
"""Mask a person re-ID set's query and gallery images with the MGCAM person masks."""

from overlearning.data.person_sets import prepare_person_set
from overlearning.workflow.cli import ScriptParser


def main() -> None:
    parser = ScriptParser(__doc__, threads=True, image_format=True)
    parser.add_argument("--images", required=True, help="folder holding query/ and bounding_box_test/")
    parser.add_argument("--masks", required=True, help="folder holding query_seg/ and bounding_box_test_seg/")
    parser.add_argument("--out", required=True, help="person root to write into")
    parser.add_argument("--junk", choices=["drop", "keep"], default="drop",
                        help="images labelled -1 (Market-1501 junk)")
    parser.add_argument("--distractors", choices=["drop", "keep"], default="keep",
                        help="images labelled 0000 (Market-1501 distractors)")
    parser.add_argument("--naming", choices=["cuhk03", "market1501", "any"], default="any",
                        help="official file-name pattern the images must follow")
    args = parser.parse()
    prepare_person_set(args.images, args.masks, args.out, ext=args.ext, quality=args.quality,
                       threads=args.threads, junk=args.junk, distractors=args.distractors,
                       naming=args.naming)


if __name__ == "__main__":
    main()

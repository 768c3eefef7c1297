"""A SAM mask polygon for every detection of a set (the `segment` rule).

One image encode per image; all of an image's boxes are decoded in one call.
Runs with hub access switched off: weights come from the weights cache.
"""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser, report, set_torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True, weights_cache=True)
    parser.add_argument("--detections", required=True, help="the set's detections JSON")
    parser.add_argument("--image-root", required=True, help="folder or pack the image names are in")
    parser.add_settings("--models", "config models.*")
    parser.add_settings("--segmentation", "config segmentation.*")
    parser.add_argument("--out", required=True, help="the set's masks JSON")
    args = parser.parse(argv)

    from overlearning.detect.segmentation import run_segment

    set_torch_threads(args.threads)
    counts = run_segment(args.detections, args.image_root, args.models,
                         args.segmentation, args.cache, args.out)
    report(counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

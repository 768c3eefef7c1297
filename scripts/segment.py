"""A SAM mask polygon for every detection of a set (the `segment` rule).

One image encode per image; all of an image's boxes are decoded in one call.
Runs with hub access switched off: weights come from the weights cache.
"""

from __future__ import annotations

import argparse
import json
import sys

from overlearning.models.cache import go_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detections", required=True, help="the set's detections JSON")
    parser.add_argument("--image-root", required=True, help="folder the image names are under")
    parser.add_argument("--models", required=True, help="config models.* (JSON)")
    parser.add_argument("--segmentation", required=True, help="config segmentation.* (JSON)")
    parser.add_argument("--cache", required=True, help="the weights cache")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="the set's masks JSON")
    args = parser.parse_args(argv)
    go_offline(args.cache)
    import torch

    from overlearning.detect.segmentation import run_segment

    torch.set_num_threads(args.threads)
    counts = run_segment(args.detections, args.image_root, json.loads(args.models),
                         json.loads(args.segmentation), args.cache, args.out)
    print(json.dumps(counts, sort_keys=True), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

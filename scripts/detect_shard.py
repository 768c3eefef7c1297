"""Detect objects with GroundingDINO in one shard of a set's images (the `detect_shard` rule).

The set's image list comes from a frame-level instances file (VIS test split) or an image
folder (person galleries); shard i of n is the i-th contiguous slice of the sorted list.
Runs with hub access switched off: weights come from the weights cache.
"""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser, report, set_torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True, weights_cache=True)
    parser.add_argument("--images-from", required=True,
                        help="instances.json (VIS frames) or the image pack")
    parser.add_argument("--image-root", required=True, help="folder or pack the image names are in")
    parser.add_settings("--models", "config models.*")
    parser.add_settings("--detection", "config detection.*")
    parser.add_argument("--shard", type=int, required=True, help="0-based shard index")
    parser.add_argument("--shards", type=int, required=True, help="number of shards")
    parser.add_argument("--out", required=True, help="shard detections JSON")
    args = parser.parse(argv)

    from overlearning.detect.grounding import run_detect_shard

    set_torch_threads(args.threads)
    summary = run_detect_shard(args.images_from, args.image_root, args.models,
                               args.detection, args.cache, args.shard, args.shards,
                               args.out)
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

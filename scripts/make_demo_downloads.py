"""Write the demo's generated stand-ins for the official dataset downloads."""

from __future__ import annotations

import sys

from overlearning.demo.downloads import DemoSizes, write_demo_downloads
from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--out", required=True, help="folder to write the archives into")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--vis-videos", type=int, required=True)
    parser.add_argument("--vis-frames", type=int, required=True)
    parser.add_argument("--ovis-videos", type=int, required=True)
    parser.add_argument("--ovis-frames", type=int, required=True)
    parser.add_argument("--persons", type=int, required=True)
    parser.add_argument("--cameras", type=int, required=True)
    parser.add_argument("--images-per-camera", type=int, required=True)
    parser.add_argument("--image-size", type=int, nargs=2, required=True,
                        metavar=("HEIGHT", "WIDTH"), help="video frame size")
    parser.add_argument("--split", type=float, nargs=2, default=(0.8, 0.9),
                        help="the study's split cut points (valid and test videos get persons)")
    parser.add_argument("--split-seed", type=int, default=123)
    parser.add_argument("--expect", nargs="*", default=[],
                        help="paths the workflow expects; each must be one the generator writes")
    args = parser.parse(argv)
    sizes = DemoSizes(args.vis_videos, args.vis_frames, args.ovis_videos, args.ovis_frames,
                      args.persons, args.cameras, args.images_per_camera,
                      (args.image_size[0], args.image_size[1]))
    for path in write_demo_downloads(args.out, sizes, args.seed, expected=args.expect,
                                     split_cuts=args.split, split_seed=args.split_seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

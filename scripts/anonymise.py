"""Write an anonymised variant of one image set: its changed images only, as a delta pack."""

from __future__ import annotations

import sys

from overlearning.core.image_io import DEFAULT_JPEG_QUALITY
from overlearning.safeguards.anonymise import METHODS, Anonymiser, anonymise_set
from overlearning.workflow.cli import ScriptParser, report


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--images", required=True, help="the set's image pack")
    parser.add_argument("--out", required=True,
                        help="folder to write changed.zip, anonymised.json, exclusion.json to")
    parser.add_argument("--selection", required=True,
                        choices=["gt_persons", "detected_persons"],
                        help="gt_persons: ground-truth persons (every image of a person pack); "
                             "detected_persons: what the detector calls a person")
    parser.add_argument("--split-dir",
                        help="folder holding fg_instances_cropped.json (VIS sets; omit for a "
                             "person pack)")
    parser.add_argument("--person-category", type=int, help="GT person category id (gt_persons)")
    parser.add_argument("--exclusion", help="exclusion JSON of the set (detected_persons)")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--strength", required=True, type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--background-level", type=int, default=0)
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY)
    args = parser.parse(argv)
    anonymiser = Anonymiser(args.method, args.strength, seed=args.seed,
                            background_level=args.background_level,
                            jpeg_quality=args.jpeg_quality)
    manifest = anonymise_set(images=args.images, out=args.out, anonymiser=anonymiser,
                             selection=args.selection, split_dir=args.split_dir,
                             person_category=args.person_category, exclusion=args.exclusion)
    report({"images": manifest["images"], "anonymised": len(manifest["anonymised"]),
            "not_indexed": len(manifest["not_indexed"])})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Index-exclusion lists of one set and their summary (the `exclusion` rule).

VIS (--frame-index given): ground-truth mode against the split's objects. Person galleries
(--gallery given): detection-only mode, the ground-truth mask being the MGCAM mask
(--gt-masks) or the whole image. The summary (counts per category) is also printed here,
so it lands in the rule's log.
"""

from __future__ import annotations

import json
import sys

from overlearning.safeguards.exclusion import run_person_exclusion, run_vis_exclusion, settings_from
from overlearning.workflow.cli import ScriptParser


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__)
    parser.add_argument("--detections", required=True, help="the set's detections JSON")
    parser.add_argument("--masks", required=True, help="the set's masks JSON")
    parser.add_settings("--exclusion", "config exclusion.*")
    parser.add_argument("--person-label", required=True, help="config detection.person_label")
    vis = parser.add_argument_group("VIS split (ground-truth mode)")
    vis.add_argument("--frame-index", help="the split's fg_instances.json")
    vis.add_argument("--cropped-index", help="the split's fg_instances_cropped.json")
    vis.add_argument("--instances", help="the split's instances.json (frames)")
    vis.add_argument("--person-category", type=int, help="ground-truth person category id")
    person = parser.add_argument_group("person gallery (detection-only mode)")
    person.add_argument("--gallery", help="foregroundImages_cropped.zip of the person set")
    person.add_argument("--gt-masks", help="MGCAM mask folder (omit: whole-image masks)")
    parser.add_argument("--out", required=True, help="exclusion JSON")
    parser.add_argument("--summary", required=True, help="summary JSON")
    args = parser.parse(argv)
    settings = settings_from(args.exclusion, args.person_label)
    if (args.frame_index is None) == (args.gallery is None):
        parser.error("give either --frame-index (VIS) or --gallery (person set)")
    if args.frame_index is not None:
        missing = [f for f in ("cropped_index", "instances", "person_category")
                   if getattr(args, f) is None]
        if missing:
            parser.error(f"VIS mode needs --{', --'.join(m.replace('_', '-') for m in missing)}")
        summary = run_vis_exclusion(args.frame_index, args.cropped_index, args.instances,
                                    args.detections, args.masks, args.person_category,
                                    settings, args.out, args.summary)
    else:
        summary = run_person_exclusion(args.gallery, args.detections, args.masks, settings,
                                       args.out, args.summary, gt_mask_dir=args.gt_masks)
    print(json.dumps(summary, sort_keys=True, indent=1), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Upper-clothes probes of one person set's queries (the clothes-probe rules).

GroundingDINO prompted with garment names, SAM on the best garment box, masked crop saved
under the query's file name; a record of every garment detection beside.
Runs with hub access switched off: weights come from the weights cache.
"""

from __future__ import annotations

import sys

from overlearning.workflow.cli import ScriptParser, report, set_torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True, weights_cache=True)
    parser.add_argument("--queries", required=True, help="foreground_query.zip of the person set")
    parser.add_argument("--out", required=True, help="probe pack to write (probes/clothes.zip)")
    parser.add_argument("--record", required=True, help="garment detections JSON to write")
    parser.add_settings("--models", "config models.*")
    parser.add_settings("--clothes", "config clothes.*")
    parser.add_settings("--detection", "config detection.*")
    parser.add_settings("--segmentation", "config segmentation.*")
    parser.add_argument("--quality", type=int, required=True, help="JPEG quality of the crops")
    args = parser.parse(argv)

    from overlearning.detect.clothes import run_clothes_probe

    set_torch_threads(args.threads)
    summary = run_clothes_probe(args.queries, args.out, args.record, args.models,
                                args.clothes, args.detection,
                                args.segmentation, args.cache, args.quality)
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

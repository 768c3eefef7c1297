"""Upper-clothes probes of one person set's queries (the clothes-probe rules).

GroundingDINO prompted with garment names, SAM on the best garment box, masked crop saved
under the query's file name; a record of every garment detection beside.
Runs with hub access switched off: weights come from the weights cache.
"""

from __future__ import annotations

import json
import sys

from overlearning.workflow.cli import ScriptParser, report, set_torch_threads


def main(argv: list[str] | None = None) -> int:
    parser = ScriptParser(__doc__, threads=True, weights_cache=True)
    parser.add_argument("--queries", required=True, help="foreground_query/ of the person set")
    parser.add_argument("--out", required=True, help="probe folder to write (replaced whole)")
    parser.add_argument("--record", required=True, help="garment detections JSON to write")
    parser.add_argument("--models", required=True, help="config models.* (JSON)")
    parser.add_argument("--clothes", required=True, help="config clothes.* (JSON)")
    parser.add_argument("--detection", required=True, help="config detection.* (JSON)")
    parser.add_argument("--segmentation", required=True, help="config segmentation.* (JSON)")
    parser.add_argument("--quality", type=int, required=True, help="JPEG quality of the crops")
    args = parser.parse(argv)

    from overlearning.detect.clothes import run_clothes_probe

    set_torch_threads(args.threads)
    summary = run_clothes_probe(args.queries, args.out, args.record, json.loads(args.models),
                                json.loads(args.clothes), json.loads(args.detection),
                                json.loads(args.segmentation), args.cache, args.quality)
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

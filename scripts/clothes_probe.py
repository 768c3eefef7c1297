"""Upper-clothes probes of one person set's queries (the clothes-probe rules).

GroundingDINO prompted with garment names, SAM on the best garment box, masked crop saved
under the query's file name; a record of every garment detection beside.
Runs with hub access switched off: weights come from the weights cache.
"""

from __future__ import annotations

import argparse
import json
import sys

from overlearning.models.cache import go_offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", required=True, help="foreground_query/ of the person set")
    parser.add_argument("--out", required=True, help="probe folder to write (replaced whole)")
    parser.add_argument("--record", required=True, help="garment detections JSON to write")
    parser.add_argument("--models", required=True, help="config models.* (JSON)")
    parser.add_argument("--clothes", required=True, help="config clothes.* (JSON)")
    parser.add_argument("--detection", required=True, help="config detection.* (JSON)")
    parser.add_argument("--segmentation", required=True, help="config segmentation.* (JSON)")
    parser.add_argument("--cache", required=True, help="the weights cache")
    parser.add_argument("--quality", type=int, required=True, help="JPEG quality of the crops")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    go_offline(args.cache)
    import torch

    from overlearning.detect.clothes import run_clothes_probe

    torch.set_num_threads(args.threads)
    summary = run_clothes_probe(args.queries, args.out, args.record, json.loads(args.models),
                                json.loads(args.clothes), json.loads(args.detection),
                                json.loads(args.segmentation), args.cache, args.quality)
    print(json.dumps(summary, sort_keys=True), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

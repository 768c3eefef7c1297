"""The k-reciprocal attacker's nearest and farthest lists for the 4 YouTube-VIS evaluations of
one `metrics` job: each evaluation's own two passes (what the metrics script did before,
and what re-ranking one evaluation at a time does) against one pass over the group's
distinct vectors plus each evaluation's derivation (overlearning.evaluate.item_lists), in
the same run, on the same vectors; the lists are checked equal.

The evaluations, at ``--scale`` of the published counts: YouTube-VIS test (18,344 objects,
4,411 of them persons, who sit together) as queries, non-persons against non-persons and
persons against all, each without and with index exclusion (80 % of the persons
excluded), every one against OVIS test (about 220,000 objects: about 243,000 items in the
person evaluation). The physical floor of the shared way is one (n_union)^2 x dim GEMM
(both of its passes need every distance once); it is timed on the same vectors.

    python bench/bench_shared_lists.py --out DIR [--scale 0.25] [--dim 32] [--device cuda]
        ->   DIR/shared_lists.json (DIR/shared_lists_scale_<s>.json at another scale)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import write_result  # noqa: E402

PUBLISHED = {"vis_test": 18344, "vis_test_persons": 4411, "ovis_test": 220000}
WIDTH = 21  # k1 + 1 of the published parameters (k1 = 20)


def vectors(scale: float, dim: int, seed: int):
    """Clustered unit vectors for YouTube-VIS test (persons in a region of their own) and
    OVIS test, the person mask and the exclusion mask."""
    rng = np.random.default_rng(seed)

    def clustered(n: int, spread: float) -> np.ndarray:
        ids = max(2, n // 25)
        centres = rng.normal(size=(ids, dim))
        x = centres[rng.integers(0, ids, n)] + spread * rng.normal(size=(n, dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    n_vis = max(4, round(PUBLISHED["vis_test"] * scale))
    n_persons = max(2, round(PUBLISHED["vis_test_persons"] * scale))
    vis = clustered(n_vis, 0.5)
    persons = np.zeros(n_vis, dtype=bool)
    persons[rng.choice(n_vis, n_persons, replace=False)] = True
    shifted = vis[persons] * 0.5 + np.full(dim, 1.0 / np.sqrt(dim), dtype=np.float32)
    vis[persons] = shifted / np.linalg.norm(shifted, axis=1, keepdims=True)
    ovis = clustered(max(4, round(PUBLISHED["ovis_test"] * scale)), 0.6)
    excluded = persons & (rng.random(n_vis) < 0.8)
    return vis, ovis, persons, excluded


def evaluations(vis, ovis, persons, excluded) -> dict[str, np.ndarray]:
    """Items of each evaluation: its queries, then its kept references."""
    return {
        "nonperson/none": np.concatenate([vis[~persons], vis[~persons], ovis]),
        "person/none": np.concatenate([vis[persons], vis, ovis]),
        "nonperson/excluded": np.concatenate([vis[~persons], vis[~persons & ~excluded], ovis]),
        "person/excluded": np.concatenate([vis[persons], vis[~excluded], ovis]),
    }


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def gemm_floor(union: np.ndarray, device: str) -> float:
    """Seconds of one blocked (n, n) x dim GEMM over the union (results discarded)."""
    import torch

    x = torch.as_tensor(union).to(device)
    step = max(1, (1 << 22) // len(union))
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(union), step):
            (x[s:s + step] @ x.T).sum()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--scale", type=float, default=0.25,
                        help="fraction of the published YouTube-VIS test and OVIS test counts")
    parser.add_argument("--dim", type=int, default=32, help="32: the demo models' embeddings")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the passes)")
    args = parser.parse_args()

    import torch

    from overlearning.evaluate.item_lists import SharedLists, direct_lists

    torch.set_num_threads(args.threads)
    vis, ovis, persons, excluded = vectors(args.scale, args.dim, args.seed)
    items = evaluations(vis, ovis, persons, excluded)
    own, own_wall, own_cpu = {}, 0.0, 0.0
    for name, x in items.items():
        own[name], wall, cpu = timed(lambda x=x: direct_lists(x, WIDTH, args.device))
        own_wall, own_cpu = own_wall + wall, own_cpu + cpu
    shared = SharedLists(np.concatenate([vis, ovis]), args.device)
    derived, shared_wall, shared_cpu = timed(
        lambda: {name: shared.lists(x, WIDTH) for name, x in items.items()})
    equal = all(np.array_equal(own[n][0], derived[n][0]) and np.array_equal(own[n][1], derived[n][1])
                for n in items)
    assert shared._union is not None
    floor = gemm_floor(shared._union, args.device)
    result = {
        "benchmark": "k-reciprocal nearest and farthest lists of a metrics job's 4 YouTube-VIS "
                     "evaluations: each evaluation's own passes vs one shared pass",
        "scale_of_published_counts": args.scale, "dim": args.dim, "seed": args.seed,
        "threads": args.threads, "device": args.device, "width": WIDTH,
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "items_per_evaluation": {name: len(x) for name, x in items.items()},
        "union_vectors": len(shared._union),
        "own_passes": {"wall_s": round(own_wall, 2), "cpu_s": round(own_cpu, 2)},
        "shared": {"wall_s": round(shared_wall, 2), "cpu_s": round(shared_cpu, 2),
                   "items_derived": shared.derived, "items_recomputed": shared.recomputed},
        "lists_equal": equal,
        "speedup": round(own_wall / shared_wall, 2),
        "floor_one_union_gemm_s": round(floor, 2),
        "shared_over_floor": round(shared_wall / floor, 2),
    }
    name = "shared_lists" if args.scale == 0.25 else f"shared_lists_scale_{args.scale:g}"
    write_result(args.out, name, result)
    print(json.dumps(result, indent=1))
    if not equal:
        sys.exit("the shared lists differ from the evaluations' own lists")


if __name__ == "__main__":
    main()

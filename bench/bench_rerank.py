"""k-reciprocal re-ranking at Market-1501 size: ours (k-nearest lists, sparse, by query
blocks; overlearning.evaluate.rerank) against the textbook dense implementation (the
published algorithm over the full (n_q + n_g)^2 matrix, as tests/test_attackers.py
re-derives it), in the same run, on the same embeddings.

Each implementation runs in its own child process, so its peak resident memory is its own
(``os.wait4``'s ``ru_maxrss``); both write their query x gallery distances, which are then
compared. Market-1501's evaluation: 3,368 queries against 15,913 gallery images (19,732
read, junk and distractors dropped); 512-d embeddings, about 20 images per identity.

    python bench/bench_rerank.py --out DIR [--scale 0.1] [--device cuda]   ->   DIR/rerank.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import write_result  # noqa: E402

MARKET = {"queries": 3368, "gallery": 15913, "read": 19732}


def embeddings(n_q: int, n_g: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: identities with about 20 images each, queries among them."""
    rng = np.random.default_rng(seed)
    ids = max(2, (n_q + n_g) // 20)
    centres = rng.normal(size=(ids, dim)).astype(np.float32)
    def draw(n: int) -> np.ndarray:
        x = centres[rng.integers(0, ids, n)] + 0.9 * rng.normal(size=(n, dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return draw(n_q), draw(n_g)


def worker(kind: str, n_q: int, n_g: int, dim: int, seed: int, device: str, threads: int,
           out: Path) -> None:
    import torch

    torch.set_num_threads(threads)
    q, g = embeddings(n_q, n_g, dim, seed)
    start = time.perf_counter()
    if kind == "ours":
        from overlearning.evaluate.rerank import KReciprocal, k_reciprocal
        reranked = k_reciprocal(q, g, np.ones(n_g, bool), KReciprocal(), device)
        built = time.perf_counter() - start
        step = reranked.block_size()
        result = np.empty((n_q, n_g), dtype=np.float32)
        for s in range(0, n_q, step):
            result[s:s + step] = reranked.rows(s, min(s + step, n_q))
        times = {"graph_s": built}
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_attackers import textbook_on

        from overlearning.evaluate.rerank import KReciprocal
        result = textbook_on(q, g, KReciprocal())
        times = {}
    times["total_s"] = time.perf_counter() - start
    np.save(out, result.astype(np.float32))
    out.with_suffix(".json").write_text(json.dumps(times))


def measure(kind: str, args: argparse.Namespace, n_q: int, n_g: int, tmp: Path) -> dict:
    out = tmp / f"{kind}.npy"
    command = [sys.executable, __file__, "--worker", kind, "--out", str(tmp), "--n-q", str(n_q),
               "--n-g", str(n_g), "--dim", str(args.dim), "--seed", str(args.seed),
               "--device", args.device, "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        return {"failed": f"exit status {status}", "wall_s": round(wall, 2),
                "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    times = json.loads(out.with_suffix(".json").read_text())
    return {**{k: round(v, 2) for k, v in times.items()}, "process_wall_s": round(wall, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of Market-1501's query and gallery counts")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch)")
    parser.add_argument("--device", default="cpu", help="ours: cpu or cuda (the neighbour search)")
    parser.add_argument("--no-textbook", action="store_true", help="time ours only")
    parser.add_argument("--worker", choices=("ours", "textbook"), help=argparse.SUPPRESS)
    parser.add_argument("--n-q", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n-g", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n_q, args.n_g, args.dim, args.seed, args.device, args.threads,
               args.out / f"{args.worker}.npy")
        return

    n_q = max(2, round(MARKET["queries"] * args.scale))
    n_g = max(2, round(MARKET["gallery"] * args.scale))
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as tmp:
        tmp = Path(tmp)
        ours = measure("ours", args, n_q, n_g, tmp)
        result = {
            "benchmark": "k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3): k-nearest lists "
                         "vs the dense textbook implementation",
            "n_queries": n_q, "n_gallery": n_g, "items": n_q + n_g, "dim": args.dim,
            "scale_of_market1501": args.scale, "threads": args.threads, "device": args.device,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "seed": args.seed, "ours": ours,
            "dense_matrix_gb": round((n_q + n_g) ** 2 * 4 / 1e9, 2),
        }
        if not args.no_textbook:
            textbook = measure("textbook", args, n_q, n_g, tmp)
            result["textbook"] = textbook
            if "failed" not in ours and "failed" not in textbook:
                a, b = np.load(tmp / "ours.npy"), np.load(tmp / "textbook.npy")
                result["max_abs_difference"] = float(np.abs(a.astype(np.float64) - b).max())
                result["speedup"] = round(textbook["total_s"] / ours["total_s"], 1)
                result["memory_ratio"] = round(textbook["peak_rss_mb"] / ours["peak_rss_mb"], 1)
    name = "rerank" if args.scale == 1.0 else f"rerank_scale_{args.scale:g}"
    write_result(args.out, name, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

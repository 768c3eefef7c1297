"""Training throughput: images/s, step time split into data and compute, peak memory, MFU.

The real training step (overlearning.train.pipeline's loader, overlearning.train.step's
optimisers and backend settings, the trunk and transforms of overlearning.models.embedder,
the confusion loss) on synthetic JPEG crops written to a temporary folder. On the CPU
(default when no GPU is present) it uses a tiny random ViT of the same timm family at
64 px, the CPU input pipeline, and scales the batch size; on CUDA (``--device cuda``, or
``auto`` with a GPU) the real ViT-B/16 CLIP trunk at 384 px, batch 64, the device input
pipeline (uint8 crops, augmentation on the GPU), fused AdamW, TF32, with bf16 autocast
and channels-last, and the same in fp32 for comparison.

Steps are not synchronised: the device runs ahead of the host as in training, and the
timed window ends with one synchronisation. Data time is the host's wait for the next
batch; compute time is the rest of the window. On CUDA the FLOPs of one step (forward +
backward, torch.utils.flop_counter) times the steps per second, over the device's dense
bf16 (or TF32 for fp32 runs) peak, gives the model FLOPs utilisation (MFU); ``--peak-tflops``
sets the peak for a device not in the table.

The naive comparison is the loss: the confusion term written the way the study's script
works (a Python loop over the positive pairs to drop person anchors' positives and one
over person pairs) against our vectorised loss, forward + backward, on a batch of 64
embeddings of which half are persons.

    python bench/bench_training.py --out DIR   ->   DIR/training.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices import peak_flops  # noqa: E402
from results import write_result  # noqa: E402
from synthetic import write_crops  # noqa: E402

from overlearning.data.crop_sets import Item  # noqa: E402
from overlearning.models.embedder import build_embedding_model  # noqa: E402
from overlearning.models.losses import MultiSimilarityConfusionLoss  # noqa: E402
from overlearning.train.loader import MPerClassEpochSampler  # noqa: E402
from overlearning.train.pipeline import train_input  # noqa: E402
from overlearning.train.step import configure_backends, make_optimizers  # noqa: E402

CLIP = "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k"
TINY = {"kind": "timm", "name": CLIP,
        "overrides": {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}}
REAL = {"kind": "timm", "name": CLIP, "overrides": {}}
MS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}
CONFUSION = {"weight": 23.752884837928374, "gamma": 31.85830217870389,
             "margin": 0.012645424823545037}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def device_peak_tflops(device: torch.device, bf16: bool, override: float | None) -> float | None:
    if override:
        return override
    peak = peak_flops(torch.cuda.get_device_name(device), bf16)
    return None if peak is None else peak / 1e12


def run_training(items: list[Item], trunk_cfg: dict, batch: int, steps: int, warmup: int,
                 device: torch.device, bf16: bool, workers: int,
                 peak_tflops: float | None = None) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` untimed ones (one of them FLOP-counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    cuda = device.type == "cuda"
    configure_backends(cuda)
    torch.manual_seed(0)
    model = build_embedding_model(trunk_cfg, 512).to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
    training = {"batch_size": batch, "augment": "device" if cuda else "cpu"}
    labels = [item.label for item in items]
    sampler = MPerClassEpochSampler(labels, m=4, length=(steps + warmup) * batch,
                                    batch_size=batch, seed=0)
    inputs = train_input(items, model, training, sampler, torch.Generator().manual_seed(0),
                         workers, device, seed=0)
    loss_fn = MultiSimilarityConfusionLoss(inputs.dataset.person_labels(), **CONFUSION,
                                           **MS).to(device)
    optimizers = list(make_optimizers(model, {"lr": 1e-5, "lr_embed": 1e-5}, 1e-4,
                                      cuda).values())

    def step(batch_data: Any) -> None:
        images, labels = inputs.to_device(batch_data)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            embeddings = model(images)
        loss = loss_fn(embeddings.float(), labels)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    batches = iter(inputs.loader)
    flops = 0
    for k in range(warmup):
        if k == warmup - 1:
            counter = FlopCounterMode(display=False)
            with counter:
                step(next(batches))
            flops = counter.get_total_flops()
        else:
            step(next(batches))
    if cuda:
        torch.cuda.synchronize(device)
    data_s, done = 0.0, 0
    start = time.perf_counter()
    for _ in range(steps):
        tick = time.perf_counter()
        batch_data = next(batches)
        data_s += time.perf_counter() - tick
        step(batch_data)
        done += 1
    if cuda:
        torch.cuda.synchronize(device)  # one synchronisation for the whole window
    total = time.perf_counter() - start
    result = {
        "batch_size": batch, "steps": done, "input_size": list(model.input_size),
        "bf16": bf16, "workers": workers, "augment": training["augment"],
        "images_per_s": done * batch / total,
        "step_s": total / done,
        "data_s_per_step": data_s / done, "compute_s_per_step": (total - data_s) / done,
        "data_fraction": data_s / total,
        "peak_memory_mb": peak_memory_mb(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "tflop_per_image": flops / batch / 1e12,
    }
    peak = device_peak_tflops(device, bf16, peak_tflops) if cuda else None
    if peak:
        result["peak_tflops"] = peak
        result["mfu"] = flops * done / total / (peak * 1e12)
    return result


def naive_confusion_loss(embeddings: torch.Tensor, labels: torch.Tensor, persons: set[int],
                         weight: float, gamma: float, margin: float) -> torch.Tensor:
    """The study's way: Python loops over positive pairs and over person pairs."""
    normed = torch.nn.functional.normalize(embeddings, dim=1)
    sim = normed @ normed.T
    same = labels[:, None] == labels[None, :]
    pos_mask = (same & ~torch.eye(len(labels), dtype=torch.bool)).float()
    neg_mask = (~same).float()
    anchors, positives = torch.nonzero(pos_mask, as_tuple=True)
    for a, p in zip(anchors.tolist(), positives.tolist(), strict=True):
        if int(labels[a]) in persons:
            pos_mask[a, p] = 0
    pos_exp = torch.where(pos_mask.bool(), -MS["alpha"] * (sim - MS["base"]), -math.inf)
    neg_exp = torch.where(neg_mask.bool(), MS["beta"] * (sim - MS["base"]), -math.inf)
    zeros = torch.zeros(len(labels), 1)
    pos = torch.logsumexp(torch.cat([pos_exp, zeros], 1), 1) / MS["alpha"]
    neg = torch.logsumexp(torch.cat([neg_exp, zeros], 1), 1) / MS["beta"]
    ms = (pos * pos_mask.any(1) + neg * neg_mask.any(1)).mean()
    person_rows = [i for i in range(len(labels)) if int(labels[i]) in persons]
    rows = []
    for i_pos, i in enumerate(person_rows):
        terms = [gamma * (sim[i, j] - margin) for j in person_rows[i_pos + 1:]
                 if sim[i, j] > margin]
        rows.append(torch.logsumexp(torch.stack([torch.zeros(()), *terms]), 0) if terms
                    else torch.zeros(()))
    confusion = weight / gamma * torch.stack(rows).mean() if rows else torch.zeros(())
    return ms + confusion / len(labels)


def time_loss(fn: Any, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench_loss(batch: int, dim: int, repeats: int) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(batch) // 4
    persons = {int(x) for x in labels.unique()[: len(labels.unique()) // 2]}
    base = torch.randn(batch, dim, generator=generator)
    ours_fn = MultiSimilarityConfusionLoss(persons, **CONFUSION, **MS)

    def ours() -> float:
        x = base.clone().requires_grad_(True)
        loss = ours_fn(x, labels)
        loss.backward()
        return loss.item()

    def naive() -> float:
        x = base.clone().requires_grad_(True)
        loss = naive_confusion_loss(x, labels, persons, **CONFUSION)
        loss.backward()
        return loss.item()

    return {"batch_size": batch, "embedding_dim": dim, "persons": len(persons) * 4,
            "ours_s": time_loss(ours, repeats), "naive_s": time_loss(naive, repeats),
            "same_value": abs(ours() - naive()) < 1e-5}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--workers", type=int, default=None, help="loader workers")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device peak for MFU (default: from the table, by device name)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    workers = args.workers if args.workers is not None else (8 if cuda else 1)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "device_type": device.type, "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        items = write_crops(Path(tmp), objects=48, per_object=6, seed=0)
        if cuda:
            steps = args.steps or 30
            report["trunk"] = CLIP + " (random init, 384 px)"
            report["runs"] = [run_training(items, REAL, 64, steps, 5, device, bf16, workers,
                                           args.peak_tflops) for bf16 in (True, False)]
        else:
            steps = args.steps or 10
            report["trunk"] = CLIP + " shrunk: " + json.dumps(TINY["overrides"], sort_keys=True)
            report["runs"] = [run_training(items, TINY, batch, steps, 2, device, False, workers)
                              for batch in (8, 16, 32)]
    report["loss"] = [bench_loss(batch, 512, repeats=5) for batch in (32, 64, 128)]
    for row in report["loss"]:
        row["speedup"] = row["naive_s"] / row["ours_s"]
    write_result(args.out, "training", report)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

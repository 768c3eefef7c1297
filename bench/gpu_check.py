"""One prepared GPU check: the study's heavy paths at full size, timed, in one JSON.

Runs offline (random weights, generated JPEGs, a locally built BERT for GroundingDINO) and
measures, on the first CUDA device:

- training: the full-size ViT-B/16 CLIP trunk at 384 px, batch 64, bf16 autocast, the real
  crop loader (CropDataset + MPerClassEpochSampler, worker processes, pinned memory) and
  loss: images/s, MFU (FLOPs of one step counted by torch.utils.flop_counter against the
  device's dense bf16 peak, table below), data-wait fraction, peak memory;
- evaluation embeddings (overlearning.evaluate.embeddings.embed_items, bf16): images/s;
- GroundingDINO Swin-T at 800/1333, padded batches of 8, TF32: images/s;
- SAM ViT-B (1024 px), batched image encoding in bf16 + one decode per image: images/s;
- exclusion-aware exact ranking (overlearning.evaluate.ranking) at 100k x 100k, 512-d, on
  the GPU, against the CPU at 20k x 20k: seconds.

With ``GPU_CHECK_TINY=1`` (or ``--tiny``) every part runs with tiny models and sizes, on
whatever device there is (the CPU in the test suite), and writes the same fields.

    bench/gpu_check.sh [OUT.json]   (default bench-results/gpu/<device>.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices import peak_flops  # noqa: E402
from synthetic import write_crops  # noqa: E402

from overlearning.data.crop_sets import Item  # noqa: E402
from overlearning.evaluate.embeddings import embed_items  # noqa: E402
from overlearning.evaluate.ranking import knn_with_exclusion, l2_normalise  # noqa: E402
from overlearning.models.embedder import build_embedding_model  # noqa: E402
from overlearning.models.losses import MultiSimilarityConfusionLoss  # noqa: E402
from overlearning.train.loader import CropDataset, MPerClassEpochSampler  # noqa: E402

CLIP = "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k"
TARGETS = {"train_mfu": 0.40, "train_data_wait_fraction": 0.05,
           "embeddings_images_per_s": 3000.0, "ranking_gpu_s": 10.0}
MS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}
CONFUSION = {"weight": 23.752884837928374, "gamma": 31.85830217870389,
             "margin": 0.012645424823545037}

FULL = {
    "trunk": {"kind": "timm", "name": CLIP, "overrides": {}},
    "train_batch": 64, "train_steps": 20, "train_warmup": 5,
    "embed_images": 16384, "embed_batch": 256,
    "gd": {"config": "GroundingDINO_SwinT_OGC", "overrides": {}},
    "bert": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072},
    "gd_size": (800, 1333), "gd_frame": (720, 1280), "gd_images": 48, "gd_batch": 8,
    "sam": {"variant": "vit_b", "overrides": {}}, "sam_frame": (720, 1280),
    "sam_images": 64, "sam_batch": 8, "sam_boxes": 5,
    "rank_gpu": 100_000, "rank_cpu": 20_000, "rank_dim": 512, "rank_k": 120,
}
TINY = {
    "trunk": {"kind": "timm", "name": CLIP,
              "overrides": {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}},
    "train_batch": 8, "train_steps": 2, "train_warmup": 0,
    "embed_images": 16, "embed_batch": 8,
    "gd": {"config": "GroundingDINO_SwinT_OGC",
           "overrides": {"enc_layers": 1, "dec_layers": 1, "num_queries": 10}},
    "bert": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64},
    "gd_size": (64, 96), "gd_frame": (64, 80), "gd_images": 2, "gd_batch": 2,
    "sam": {"variant": "vit_b", "overrides": {
        "encoder_depth": 1, "encoder_embed_dim": 32, "encoder_num_heads": 2,
        "encoder_global_attn_indexes": [0], "image_size": 64}},
    "sam_frame": (64, 80), "sam_images": 2, "sam_batch": 2, "sam_boxes": 2,
    "rank_gpu": 1000, "rank_cpu": 500, "rank_dim": 32, "rank_k": 20,
}
PROMPTS = ["an airplane", "a bear", "a dog", "a person", "a zebra"]


# The JSON's fields, the same for a tiny and a full run (tests/test_gpu_check.py).
FIELDS = {
    "": ["cpu", "cuda", "device", "device_type", "embeddings", "grounding_dino", "meets",
         "ranking", "sam", "targets", "tiny", "torch", "train", "wall_s"],
    "train": ["batch_size", "bf16", "bf16_peak_flops", "data_wait_fraction", "flops_per_step",
              "images_per_s", "input_size", "loader_workers", "mfu", "model",
              "peak_memory_gib", "step_s", "timed_steps", "wall_s"],
    "embeddings": ["batch_size", "images", "images_per_s", "loader_workers",
                   "model_only_images_per_s", "precision", "seconds", "wall_s"],
    "grounding_dino": ["batch_size", "batching", "config", "frame", "image_size", "images",
                       "images_per_s", "peak_memory_gib", "precision", "wall_s"],
    "sam": ["batch_size", "boxes_per_image", "image_size", "images", "images_per_s",
            "peak_memory_gib", "precision", "variant", "wall_s"],
    "ranking": ["cpu_n", "cpu_s", "cpu_threads", "device_n", "device_s", "dim", "excluded_fraction",
                "k", "wall_s"],
    "meets": sorted(TARGETS),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def frames(count: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Video-frame-like RGB images: smooth colour fields with a few bright rectangles."""
    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(count):
        img = np.kron(rng.integers(0, 200, (9, 16, 3)), np.ones((h // 9 + 1, w // 16 + 1, 1)))
        img = img[:h, :w].astype(np.uint8)
        for _ in range(4):
            y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
            img[y:y + h // 4, x:x + w // 4] = rng.integers(150, 255, 3)
        out.append(img)
    return out


# --- training: the call site to switch when the training step API changes ----------------
def train_check(items: list[Item], cfg: dict, device: torch.device, workers: int) -> dict:
    """Images/s, MFU, data wait and peak memory of the training step with the real loader."""
    from torch.utils.data import DataLoader
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    cuda = device.type == "cuda"
    model = build_embedding_model(cfg["trunk"], 512).to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats(device)
    dataset = CropDataset(items, model.train_transform)
    loss_fn = MultiSimilarityConfusionLoss(dataset.person_labels(), **CONFUSION, **MS).to(device)
    optimizers = [torch.optim.AdamW(model.trunk.parameters(), lr=1e-5, weight_decay=1e-4),
                  torch.optim.AdamW(model.embedder.parameters(), lr=1e-5, weight_decay=1e-4)]
    batch, steps, warmup = cfg["train_batch"], cfg["train_steps"], cfg["train_warmup"]
    sampler = MPerClassEpochSampler(dataset.labels, m=4, length=(steps + warmup + 1) * batch,
                                    batch_size=batch, seed=0)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers,
                        pin_memory=cuda, drop_last=True, persistent_workers=False,
                        prefetch_factor=4 if workers else None)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.to(device, non_blocking=True)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            embeddings = model(images)
        loss = loss_fn(embeddings.float(), labels)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()

    waits, computes, flops, done = [], [], 0, 0
    tick = time.perf_counter()
    for images, labels in loader:
        fetched = time.perf_counter()
        if done == warmup:  # one counted step, untimed
            with FlopCounterMode(display=False) as counter:
                step(images, labels)
            flops = counter.get_total_flops()
        else:
            step(images, labels)
        sync(device)
        end = time.perf_counter()
        if done > warmup:
            waits.append(fetched - tick)
            computes.append(end - fetched)
        done += 1
        tick = time.perf_counter()
        if done == warmup + steps + 1:
            break
    total = sum(waits) + sum(computes)
    step_s = total / len(computes)
    peak = peak_flops(torch.cuda.get_device_name(device)) if cuda else None
    return {
        "model": cfg["trunk"]["name"], "input_size": list(model.input_size),
        "batch_size": batch, "timed_steps": len(computes), "loader_workers": workers,
        "bf16": cuda, "images_per_s": round(batch / step_s, 1), "step_s": round(step_s, 4),
        "flops_per_step": flops, "bf16_peak_flops": peak,
        "mfu": round(flops / step_s / peak, 4) if peak else None,
        "data_wait_fraction": round(sum(waits) / total, 4),
        "peak_memory_gib": peak_memory_gib(device),
    }
# -----------------------------------------------------------------------------------------


def embeddings_check(items: list[Item], cfg: dict, device: torch.device, workers: int) -> dict:
    torch.manual_seed(0)
    model = build_embedding_model(cfg["trunk"], 512).to(device).eval()
    precision = "bf16" if device.type == "cuda" else "fp32"
    if device.type == "cuda":  # warm-up: kernels, allocator
        embed_items(model, items[: cfg["embed_batch"]], cfg["embed_batch"], str(device), 0,
                    precision)
    sync(device)
    start = time.perf_counter()
    out = embed_items(model, items, cfg["embed_batch"], str(device), workers, precision)
    sync(device)
    seconds = time.perf_counter() - start
    # The model alone on device-resident batches: the loader's share shows in the gap.
    x = torch.randn(cfg["embed_batch"], 3, *model.input_size, device=device)
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16,
                                                enabled=device.type == "cuda"):
        model(x)
        sync(device)
        t0 = time.perf_counter()
        reps = 3 if device.type == "cuda" else 1
        for _ in range(reps):
            model(x)
        sync(device)
        model_only = reps * len(x) / (time.perf_counter() - t0)
    return {"images": len(out), "batch_size": cfg["embed_batch"], "loader_workers": workers,
            "precision": precision, "images_per_s": round(len(out) / seconds, 1),
            "model_only_images_per_s": round(model_only, 1), "seconds": round(seconds, 3)}


def grounding_check(cfg: dict, device: torch.device, scratch: Path) -> dict:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from overlearning.core.precision import precision_for
    from overlearning.detect.grounding import GroundingDetector
    from overlearning.models.detector_weights import tiny_vocab
    from overlearning.models.detectors import build_grounding_dino

    bert_dir = scratch / "bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab()
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"),
                      do_lower_case=True).save_pretrained(str(bert_dir))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), **cfg["bert"])).save_pretrained(str(bert_dir))
    model = build_grounding_dino({**cfg["gd"], "text_encoder": str(bert_dir)}, bert_dir)
    model = model.to(device).eval()
    precision = precision_for(device, "tf32")
    detector = GroundingDetector(model, PROMPTS, 0.2, 0.1, cfg["gd_size"][0], cfg["gd_size"][1],
                                 "padded", precision)
    h, w = cfg["gd_frame"]
    # Two frame sizes, as in a real set: the padded batches mix them.
    pictures = [Image.fromarray(f) for f in frames(cfg["gd_images"], (h, w), 1)]
    pictures[1::2] = [p.resize((w - w // 8, h)) for p in pictures[1::2]]
    batch = cfg["gd_batch"]
    if device.type == "cuda":
        detector.detect(pictures[:batch])  # warm-up: kernels, allocator
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(pictures), batch):
        detector.detect(pictures[i:i + batch])
    sync(device)
    seconds = time.perf_counter() - start
    return {"config": cfg["gd"]["config"], "image_size": list(cfg["gd_size"]),
            "frame": [h, w], "batch_size": batch, "batching": "padded",
            "precision": precision, "images": len(pictures),
            "images_per_s": round(len(pictures) / seconds, 2),
            "peak_memory_gib": peak_memory_gib(device)}


def sam_check(cfg: dict, device: torch.device) -> dict:
    from overlearning.core.precision import precision_for
    from overlearning.detect.segmentation import encode_images, make_predictor, segment_encoded
    from overlearning.models.detectors import build_sam

    torch.manual_seed(0)
    predictor = make_predictor(build_sam(cfg["sam"]).to(device).eval())
    precision = precision_for(device, "bf16")
    h, w = cfg["sam_frame"]
    pictures = frames(cfg["sam_images"], (h, w), 2)
    rng = np.random.default_rng(0)
    boxes = [[float(x), float(y), float(x + w / 4), float(y + h / 4)]
             for x, y in zip(rng.uniform(0, w / 2, cfg["sam_boxes"]),
                             rng.uniform(0, h / 2, cfg["sam_boxes"]), strict=True)]
    batch = cfg["sam_batch"]

    def run(images: list[np.ndarray]) -> None:
        features = encode_images(predictor, images, precision)
        for i in range(len(images)):
            segment_encoded(predictor, features[i:i + 1], (h, w), boxes, 0.0, "union")

    if device.type == "cuda":
        run(pictures[:batch])  # warm-up: kernels, allocator
    sync(device)
    start = time.perf_counter()
    for i in range(0, len(pictures), batch):
        run(pictures[i:i + batch])
    sync(device)
    seconds = time.perf_counter() - start
    return {"variant": cfg["sam"]["variant"], "image_size": predictor.model.image_encoder.img_size,
            "batch_size": batch, "boxes_per_image": cfg["sam_boxes"], "precision": precision,
            "images": len(pictures), "images_per_s": round(len(pictures) / seconds, 2),
            "peak_memory_gib": peak_memory_gib(device)}


def _rank_seconds(n: int, dim: int, k: int, device: str) -> float:
    rng = np.random.default_rng(n)
    x = l2_normalise(rng.standard_normal((n, dim), dtype=np.float32))
    kept = rng.random(n) > 0.1
    start = time.perf_counter()
    knn_with_exclusion(x, x, k, kept, np.arange(n), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ranking_check(cfg: dict, device: torch.device) -> dict:
    dim, k = cfg["rank_dim"], cfg["rank_k"]
    if device.type == "cuda":
        _rank_seconds(2000, dim, k, "cuda")  # warm-up (CUDA context, kernels)
    device_s = _rank_seconds(cfg["rank_gpu"], dim, k, device.type)
    cpu_s = _rank_seconds(cfg["rank_cpu"], dim, k, "cpu")
    return {"dim": dim, "k": k, "excluded_fraction": 0.1,
            "device_n": cfg["rank_gpu"], "device_s": round(device_s, 3),
            "cpu_n": cfg["rank_cpu"], "cpu_s": round(cpu_s, 3),
            "cpu_threads": torch.get_num_threads()}


def timed(name: str, fn: Callable[[], dict]) -> dict:
    start = time.perf_counter()
    result = fn()
    result["wall_s"] = round(time.perf_counter() - start, 2)
    print(f"{name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return result


def run(tiny: bool) -> dict[str, Any]:
    cfg = TINY if tiny else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workers = 2 if tiny else max(1, min(16, (os.cpu_count() or 2) - 1))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        scratch = Path(tmp)
        per_object = 8
        items = write_crops(scratch / "crops", max(cfg["embed_images"] // per_object, 2),
                            per_object, 0)
        result = {
            "device": name, "device_type": device.type, "tiny": tiny,
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu": f"{platform.machine()} x {os.cpu_count()}",
            "train": timed("train", lambda: train_check(items, cfg, device, workers)),
            "embeddings": timed("embeddings",
                                lambda: embeddings_check(items, cfg, device, workers)),
            "grounding_dino": timed("grounding_dino",
                                    lambda: grounding_check(cfg, device, scratch)),
            "sam": timed("sam", lambda: sam_check(cfg, device)),
            "ranking": timed("ranking", lambda: ranking_check(cfg, device)),
        }
    train, emb, rank = result["train"], result["embeddings"], result["ranking"]
    result["targets"] = TARGETS
    result["meets"] = {
        "train_mfu": train["mfu"] is not None and train["mfu"] >= TARGETS["train_mfu"],
        "train_data_wait_fraction":
            train["data_wait_fraction"] < TARGETS["train_data_wait_fraction"],
        "embeddings_images_per_s":
            emb["images_per_s"] >= TARGETS["embeddings_images_per_s"],
        "ranking_gpu_s": rank["device_n"] >= 100_000 and rank["device_s"] < TARGETS["ranking_gpu_s"],
    }
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def default_out(result: dict) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", result["device"]).strip("-").lower() or "device"
    return Path(__file__).resolve().parent.parent / "bench-results" / "gpu" / f"{slug}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, help="JSON to write")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (or GPU_CHECK_TINY=1)")
    args = parser.parse_args(argv)
    tiny = args.tiny or os.environ.get("GPU_CHECK_TINY", "") not in ("", "0")
    result = run(tiny)
    out = args.out or default_out(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}: meets {result['meets']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

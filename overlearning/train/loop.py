"""Training of one loss setting (REFERENCE "Training"), resumable and optionally distributed.

One run: the pretrained trunk from the weights cache + a fresh ``Linear`` embedder, the
train split's crops (persons excluded unless the setting trains with them) drawn by
MPerClassSampler(m) in batches of ``batch_size``, AdamW with one learning rate for the
trunk and one for the embedder, the setting's loss (overlearning.models.losses). After every
epoch: validation on the valid split (non-person MAP@R with the non-person crops as
queries and references; person-query MAP@R with the person crops as queries against
persons + non-persons; pytorch-metric-learning's AccuracyCalculator, k="max_bin_count",
L2-normalised embeddings) and a checkpoint.

The checkpoint (``<checkpoint dir>/checkpoint.pt``, written atomically by
overlearning.train.checkpoints) holds the model,
both optimisers, the loss state (the centre of the center loss), the sampler's RNG and
label order, every rank's RNG states (Python, NumPy, torch CPU/CUDA, the loader's
generator) and the metrics so far. A restarted job (SLURM time limit, pre-emption) finds
it, prints ``resumed from checkpoint: epoch N`` and continues; on the same hardware it
ends with the same weights as a run that was never interrupted. A checkpoint written for
other parameters or data (its fingerprint differs) is ignored.

fit() runs named steps: ``_setup`` (devices, data, model, optimisers, loaders, loss, in a
fixed order of random draws), ``_resume``, then per epoch ``_train_epoch``, ``_validate``
(or both in the background) and the checkpoint.

On CUDA: the device input pipeline (overlearning.train.pipeline, ``training.augment``:
uint8 crops in pinned memory, augmentation on the GPU), bf16 autocast (``training.amp``),
TF32, fused AdamW and optional torch.compile (overlearning.train.step), channels-last
input, loader workers from the rule's threads, checkpoints written in the background
(overlearning.train.async_checkpoint), and DDP over the GPUs of one job when started by torchrun
(every rank embeds its share of the global batch; the loss sees the whole batch through a
differentiable all-gather, so W GPUs train like one GPU with the same global batch).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from overlearning.core.atomic import (
    atomic_directory,
    read_json,
)
from overlearning.core.errors import WorkflowInputError
from overlearning.core.names import setting_title
from overlearning.core.packs import PackReader, open_pack
from overlearning.core.seeding import seed_everything
from overlearning.core.staging import staged_packs
from overlearning.data.crop_sets import CROP_PACK, Item, load_crop_set
from overlearning.models.cache import cached_trunk_state
from overlearning.models.embedder import EmbeddingModel, build_embedding_model, save_embedding_model
from overlearning.models.losses import make_loss
from overlearning.train.async_checkpoint import (
    BackgroundTask,
    CheckpointWriter,
    snapshot,
)
from overlearning.train.checkpoints import (
    CHECKPOINT,
    gather_rng_states,
    load_checkpoint,
    restore_training_state,
    save_checkpoint,
    training_state,
)
from overlearning.train.loader import CropDataset, MPerClassEpochSampler
from overlearning.train.pipeline import TrainInput, train_input
from overlearning.train.step import configure_backends, make_optimizers, maybe_compile

METRICS_FILE = "metrics.csv"
CURVE_FILE = "curve.png"
PARAMS_FILE = "params.json"
METRIC_COLUMNS = [
    "epoch", "loss", "ms_loss", "confusion_loss", "center_loss", "person_pairs_above_margin",
    "nonperson_map_at_r", "person_map_at_r", "images_per_s", "data_s", "compute_s",
    "validation_s", "peak_memory_mb", "lr", "lr_embed",
]
LOSS_TERMS = ("loss", "ms_loss", "confusion_loss", "center_loss")  # means per step
# Which setting keys each loss takes from tuning (best.json "params").
TUNABLE = {
    "ms": ("lr", "lr_embed"),
    "confusion": ("lr", "lr_embed", "weight", "gamma", "margin"),
    "center": ("lr", "lr_embed", "weight", "center_lr"),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class TrainJob:
    """Everything one training run needs, resolved from the config by the script."""

    setting: str
    params: dict[str, Any]        # the setting (trunk, train_persons, loss, lr, ...), tuned or not
    training: dict[str, Any]      # config training.* (settings left out)
    trunk_cfg: dict[str, Any]     # config models.<params["trunk"]>
    cache: Path                   # weights cache
    train_dir: Path               # {DATA}/vis/train
    valid_dir: Path               # {DATA}/vis/valid
    person_category: int
    seed: int
    threads: int = 1
    device: str | None = None     # None: CUDA when available


@dataclass
class FitResult:
    model: EmbeddingModel
    history: list[dict[str, Any]] = field(default_factory=list)
    rank: int = 0
    train_items: int = 0


def resolve_params(setting_cfg: Mapping[str, Any], tuned_path: Path | str | None = None) -> dict:
    """The setting's values, with those of a tuning result (best.json) replacing them."""
    params = dict(setting_cfg)
    if tuned_path is None:
        return params
    tuned = read_json(tuned_path)
    try:
        values = dict(tuned["params"])
    except (KeyError, TypeError):
        raise WorkflowInputError(tuned_path, "no \"params\" object in the tuning result") from None
    allowed = TUNABLE[params["loss"]]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise WorkflowInputError(tuned_path, f"parameters {unknown} do not apply to loss "
                                             f"{params['loss']!r} (allowed: {list(allowed)})")
    for key, value in values.items():
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise WorkflowInputError(tuned_path, f"parameter {key} is not a finite number")
    params.update({k: float(v) for k, v in values.items()})
    return params


# ----------------------------------------------------------------------------------------
# Devices and processes


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device: str | None) -> Processes:
    """This process's rank and device; joins the process group when torchrun started us."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if world_size == 1:
        return Processes(0, 1, torch.device(device or ("cuda" if cuda else "cpu")))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # Validation runs on rank 0 while the others wait: allow it a long time.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(hours=3))
    if cuda:
        torch.cuda.set_device(local_rank)
    return Processes(dist.get_rank(), dist.get_world_size(),
                     torch.device(f"cuda:{local_rank}" if cuda else "cpu"))


def loader_workers(training: Mapping[str, Any], threads: int, world_size: int) -> int:
    """Workers per process: as configured, but no more than the job's threads allow."""
    per_process = max(1, threads // world_size)
    return max(0, min(int(training["num_workers"]), per_process - 1))


# ----------------------------------------------------------------------------------------
# Validation


def embed(model: EmbeddingModel, dataset: CropDataset, batch_size: int, device: torch.device,
          workers: int, bf16: bool, loader: DataLoader | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings of a dataset, in its order.

    ``loader`` (over ``dataset``, unshuffled) is reused when given: fit() keeps one with
    persistent workers so that validation does not start new workers every epoch.
    """
    if loader is None:
        loader = validation_loader(dataset, batch_size, device, workers, persistent=False)
    chunks = []
    model.eval()
    with torch.inference_mode():
        for images, _ in loader:
            images = images.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model(images)
            chunks.append(torch.nn.functional.normalize(out.float(), dim=1).cpu())
    if not chunks:
        return np.zeros((0, model.embedder.out_features), dtype=np.float32)
    return torch.cat(chunks).numpy()


def validation_loader(dataset: CropDataset, batch_size: int, device: torch.device,
                      workers: int, persistent: bool,
                      generator: torch.Generator | None = None) -> DataLoader:
    """The unshuffled loader that ``embed`` reads (its transform draws nothing).

    Without a ``generator`` each pass draws its workers' base seed from torch's global
    generator, as it always did (the CPU pipeline's random draws depend on it).
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=generator,
                      persistent_workers=persistent and workers > 0)


def map_at_r(query: np.ndarray, query_labels: np.ndarray, reference: np.ndarray,
             reference_labels: np.ndarray) -> float:
    """pytorch-metric-learning MAP@R, queries being the first rows of the references.

    NaN when no query has another reference with its label (nothing to retrieve).
    """
    if len(query) == 0:
        return float("nan")
    counts: dict[int, int] = {}
    for label in reference_labels.tolist():
        counts[label] = counts.get(label, 0) + 1
    if not any(counts[label] > 1 for label in query_labels.tolist()):
        return float("nan")
    calculator = AccuracyCalculator(include=("mean_average_precision_at_r",),
                                    k="max_bin_count", device=torch.device("cpu"))
    result = calculator.get_accuracy(query, query_labels, reference, reference_labels,
                                     ref_includes_query=True)
    return float(result["mean_average_precision_at_r"])


def validation_metrics(embeddings: np.ndarray, labels: np.ndarray,
                       is_person: np.ndarray) -> dict[str, float]:
    """Non-person MAP@R (non-persons vs non-persons) and person-query MAP@R (vs all)."""
    nonperson, person = embeddings[~is_person], embeddings[is_person]
    nonperson_labels, person_labels = labels[~is_person], labels[is_person]
    return {
        "nonperson_map_at_r": map_at_r(nonperson, nonperson_labels, nonperson, nonperson_labels),
        "person_map_at_r": map_at_r(person, person_labels,
                                    np.concatenate([person, nonperson]),
                                    np.concatenate([person_labels, nonperson_labels])),
    }


# ----------------------------------------------------------------------------------------
# Resumption (the checkpoint itself: overlearning.train.checkpoints)


def fingerprint(job: TrainJob, world_size: int = 1, extra: Mapping[str, Any] | None = None) -> str:
    """What saved state must agree on to be resumed: parameters, model, data, process count.

    Not the epoch count (training longer may continue a finished run) nor the loader
    workers. ``extra`` adds what a caller's state also depends on (tuning's search space).
    """
    def listing(split_dir: Path, persons: str) -> list[tuple[str, int, bool]]:
        return [(item.name, item.label, item.is_person)
                for item in load_crop_set(split_dir, job.person_category, persons=persons)]

    training = {k: v for k, v in job.training.items() if k not in ("epochs", "num_workers")}
    blob = json.dumps({
        "params": job.params, "training": training, "trunk": job.trunk_cfg, "seed": job.seed,
        "person_category": job.person_category, "world_size": world_size,
        "train": listing(job.train_dir, "all" if job.params["train_persons"] else "exclude"),
        "valid": listing(job.valid_dir, "all"), "extra": dict(extra or {}),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------------------
# The loop


def _gather(embeddings: torch.Tensor, labels: torch.Tensor,
            procs: Processes) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole global batch in rank order; gradients flow back to each rank's share."""
    if procs.world_size == 1:
        return embeddings, labels
    from torch.distributed.nn.functional import all_gather

    label_parts = [torch.empty_like(labels) for _ in range(procs.world_size)]
    dist.all_gather(label_parts, labels)
    return torch.cat(all_gather(embeddings)), torch.cat(label_parts)


def _check_batch(items: list[Item], training: Mapping[str, Any], where: Path) -> None:
    labels = {item.label for item in items}
    m, batch = int(training["m_per_class"]), int(training["batch_size"])
    if len(labels) < 2 or len(items) < batch or m * len(labels) < batch:
        raise WorkflowInputError(where, f"{len(items)} training crops of {len(labels)} objects "
                                        f"cannot fill a batch of {batch} with {m} per object")


def _row(epoch: int, sums: dict[str, float], steps: int, timing: dict[str, float],
         metrics: dict[str, float], params: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(METRIC_COLUMNS)
    row.update({k: v / steps for k, v in sums.items() if k in LOSS_TERMS})
    if sums.get("person_pairs"):
        row["person_pairs_above_margin"] = sums["person_pairs_above"] / sums["person_pairs"]
    row.update(metrics)
    row.update(timing)
    row.update(epoch=epoch, lr=float(params["lr"]), lr_embed=float(params["lr_embed"]))
    return row


@dataclass
class _Run:
    """The live objects of one training run on this process."""

    procs: Processes
    cuda: bool
    bf16: bool
    workers: int
    batch_size: int
    model: EmbeddingModel
    network: torch.nn.Module      # the model, wrapped in DDP and/or compiled
    inputs: TrainInput            # the training loader and how its batches reach the device
    valid_set: CropDataset
    valid_loader: DataLoader      # persistent workers: validation starts none per epoch
    loss_fn: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    sampler: MPerClassEpochSampler
    generator: torch.Generator    # the loader's: its state is part of the checkpoint
    background: BackgroundTask | None  # validation + checkpoint off the critical path
    writer: CheckpointWriter      # checkpoints written in the background from a CPU copy
    train_items: int


def _configure_devices(job: TrainJob) -> tuple[Processes, int]:
    """Processes, backends, determinism and thread budget; (processes, loader workers)."""
    training = job.training
    if training.get("deterministic", False):
        # cuBLAS reads this when its first handle is made: before any CUDA work.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    procs = start_processes(job.device)
    configure_backends(procs.device.type == "cuda")
    workers = loader_workers(training, job.threads, procs.world_size)
    torch.set_num_threads(max(1, job.threads // procs.world_size - workers))
    if procs.device.type == "cuda" and training.get("deterministic", False):
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return procs, workers


def _setup(job: TrainJob, may_defer: bool, packs: tuple[PackReader, PackReader]) -> _Run:
    """Data, model, optimisers, sampler, loaders and loss, seeded in a fixed order (the
    order of random draws is part of what makes two runs identical).

    ``may_defer``: whether the epoch's validation and checkpoint may run in the background
    (not when a caller must see each epoch before the next, as tuning does). ``packs``:
    the readers of the train and valid crop packs (node-local copies where staged).
    """
    params, training = job.params, job.training
    procs, workers = _configure_devices(job)
    device = procs.device
    cuda = device.type == "cuda"
    train_items = load_crop_set(job.train_dir, job.person_category,
                                persons="all" if params["train_persons"] else "exclude",
                                images=packs[0])
    valid_items = load_crop_set(job.valid_dir, job.person_category, persons="all",
                                images=packs[1])
    _check_batch(train_items, training, job.train_dir)

    # The same initial model on every rank; augmentations then differ per rank.
    seed_everything(job.seed)
    model = build_embedding_model(job.trunk_cfg, int(training["embedding_dim"]),
                                  cached_trunk_state(params["trunk"], job.trunk_cfg, job.cache))
    seed_everything(job.seed + procs.rank)
    model.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    valid_set = CropDataset(valid_items, model.transform)
    optimizers = make_optimizers(model, params, float(training["weight_decay"]), cuda)
    batch_size = int(training["batch_size"])
    train_labels = np.array([item.label for item in train_items], dtype=np.int64)
    sampler = MPerClassEpochSampler(train_labels, m=int(training["m_per_class"]),
                                    length=len(train_items), batch_size=batch_size, seed=job.seed,
                                    rank=procs.rank, world_size=procs.world_size)
    generator = torch.Generator()
    generator.manual_seed(job.seed + procs.rank)
    inputs = train_input(train_items, model, training, sampler, generator, workers, device,
                         job.seed, procs.rank, procs.world_size)
    loss_fn = make_loss(params, training["ms_loss"], inputs.dataset.person_labels(),
                        int(training["embedding_dim"])).to(device)
    # In the background only when training draws nothing from the global generators that
    # validation's loader touches (the device pipeline): else validation must come first.
    background = BackgroundTask("epoch-end") if inputs.seeded and may_defer else None
    valid_loader = validation_loader(valid_set, batch_size, device, workers, persistent=True,
                                     generator=torch.Generator() if background else None)
    network: torch.nn.Module = model
    if procs.world_size > 1:
        network = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    network = maybe_compile(network, training)
    return _Run(procs, cuda, cuda and training["amp"] == "bf16", workers, batch_size, model,
                network, inputs, valid_set, valid_loader, loss_fn, optimizers, sampler,
                generator, background, CheckpointWriter(save_checkpoint), len(train_items))


def _resume(run: _Run, checkpoint_path: Path | None,
            key: str) -> tuple[int, list[dict[str, Any]]]:
    """(first epoch to train, history so far): 1 and [] unless a checkpoint of this run exists."""
    state = load_checkpoint(checkpoint_path, key) if checkpoint_path is not None else None
    if state is None:
        return 1, []
    start, history = restore_training_state(state, run.procs.rank, run.model, run.optimizers,
                                            run.loss_fn, run.sampler, run.generator)
    if run.procs.main:  # one line per job: ranks writing at once interleave on stderr
        log(f"resumed from checkpoint: epoch {start}")
    return start, history


def _train_epoch(run: _Run, job: TrainJob, epoch: int,
                 epochs: int) -> tuple[dict[str, float], int, dict[str, Any]]:
    """One pass over the sampler's batches: (summed loss terms, steps, timing)."""
    procs, device, inputs = run.procs, run.procs.device, run.inputs
    run.network.train()
    run.loss_fn.train()
    inputs.set_epoch(epoch)
    if run.cuda:
        torch.cuda.reset_peak_memory_stats(device)
    sums: dict[str, torch.Tensor] = {}
    steps = images_seen = 0
    data_s = compute_s = 0.0
    tick = time.perf_counter()
    for batch in tqdm(inputs.loader, desc=f"{job.setting} epoch {epoch}/{epochs}",
                      disable=not procs.main, file=sys.stderr, mininterval=10):
        fetched = time.perf_counter()
        data_s += fetched - tick
        images, labels = inputs.to_device(batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.bf16):
            embeddings = run.network(images)
        all_embeddings, all_labels = _gather(embeddings.float(), labels, procs)
        loss = run.loss_fn(all_embeddings, all_labels)
        for optimizer in run.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in run.optimizers.values():
            optimizer.step()
        for name, value in {"loss": loss.detach(), **run.loss_fn.terms}.items():
            sums[name] = sums[name] + value if name in sums else value.clone()
        steps += 1
        images_seen += len(images) * procs.world_size
        tick = time.perf_counter()
        compute_s += tick - fetched
    if run.cuda:
        torch.cuda.synchronize(device)
        compute_s += time.perf_counter() - tick
    if steps == 0:
        raise WorkflowInputError(job.train_dir, "an epoch had no complete batch")
    timing = {"images_per_s": images_seen / max(data_s + compute_s, 1e-9),
              "data_s": data_s, "compute_s": compute_s,
              "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if run.cuda else None}
    return {k: float(v) for k, v in sums.items()}, steps, timing


def _embed_valid(run: _Run, model: torch.nn.Module) -> np.ndarray:
    return embed(model, run.valid_set, run.batch_size, run.procs.device, run.workers, run.bf16,
                 loader=run.valid_loader)


def _valid_metrics(run: _Run, embeddings: np.ndarray, began: float) -> dict[str, float]:
    metrics = validation_metrics(embeddings, run.valid_set.labels, run.valid_set.is_person)
    metrics["validation_s"] = time.perf_counter() - began
    return metrics


def _validate(run: _Run) -> dict[str, float]:
    """Validation MAP@R on the main rank (the others get no metrics)."""
    if not run.procs.main:
        return {}
    began = time.perf_counter()
    return _valid_metrics(run, _embed_valid(run, run.model), began)


def _log_row(row: dict[str, Any]) -> None:
    log(" ".join(f"{k}={_fmt(row[k])}" for k in METRIC_COLUMNS if row[k] is not None))


def fit(job: TrainJob, epochs: int, checkpoint_dir: Path | None = None,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``job`` to ``epochs`` epochs, resuming from ``checkpoint_dir`` when possible.

    ``on_epoch_end(epoch, metrics row)`` runs on the main rank after each epoch's checkpoint
    is safely written (tuning reports through it). The crop packs are read from node-local
    copies where there is room (overlearning/core/staging.py), removed when training ends.
    """
    packs = [job.train_dir / CROP_PACK, job.valid_dir / CROP_PACK]
    with staged_packs(packs, log=log) as (train_pack, valid_pack):
        return _fit(job, epochs, checkpoint_dir, on_epoch_end,
                    (open_pack(train_pack), open_pack(valid_pack)))


def _fit(job: TrainJob, epochs: int, checkpoint_dir: Path | None,
         on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
         packs: tuple[PackReader, PackReader]) -> FitResult:
    run = _setup(job, may_defer=on_epoch_end is None, packs=packs)
    procs = run.procs
    checkpoint_path = checkpoint_dir / CHECKPOINT if checkpoint_dir is not None else None
    key = fingerprint(job, procs.world_size) if checkpoint_path is not None else ""
    start, history = _resume(run, checkpoint_path, key)
    result = FitResult(run.model, history, procs.rank, run.train_items)

    for epoch in range(start, epochs + 1):
        sums, steps, timing = _train_epoch(run, job, epoch, epochs)
        if run.background is not None:
            # Validate and checkpoint this epoch in the background: the next epoch starts.
            run.background.wait()  # the previous epoch's row is in the history, its file on disk
            rngs = gather_rng_states(run.generator, procs.world_size)
            if procs.main:
                # The thread adds the history once this epoch's row is in it.
                state = training_state(key, epoch, run.model, run.optimizers, run.loss_fn,
                                       run.sampler, rngs, [])
                _finish_epoch_in_background(run, epoch, sums, steps, timing, result,
                                            job.params, checkpoint_path, state)
            continue
        row = _row(epoch, sums, steps, timing, _validate(run), job.params)
        result.history.append(row)
        # Every rank takes part in gathering the RNG states; the main rank writes them.
        rngs = gather_rng_states(run.generator, procs.world_size)
        if procs.main:
            _log_row(row)
            if checkpoint_path is not None:
                # In the background from a CPU copy: the next epoch starts meanwhile.
                run.writer.save(checkpoint_path, training_state(
                    key, epoch, run.model, run.optimizers, run.loss_fn, run.sampler, rngs,
                    result.history))
            if on_epoch_end is not None:
                run.writer.wait()  # the callback may rely on the checkpoint being on disk
                on_epoch_end(epoch, row)
        if procs.world_size > 1:
            dist.barrier()
    if run.background is not None:
        run.background.wait()
    run.writer.wait()
    return result


def _finish_epoch_in_background(run: _Run, epoch: int, summary: dict[str, float], steps: int,
                                timing: dict[str, Any], result: FitResult,
                                params: Mapping[str, Any], checkpoint_path: Path | None,
                                state: dict[str, Any]) -> None:
    """Validate a copy of the model and write the checkpoint while training goes on.

    The copy and the CPU copy of the state are taken now, at the end of the epoch; the
    thread validates on a side CUDA stream (after the copy), appends the row to the
    history and writes the checkpoint with it.
    """
    assert run.background is not None
    evaluated = copy.deepcopy(run.model)
    ready = None
    if next(run.model.parameters()).is_cuda:
        ready = torch.cuda.Event()
        ready.record()
    saved = snapshot(state) if checkpoint_path is not None else None

    def finish() -> None:
        began = time.perf_counter()
        if ready is not None:
            # A new thread starts on device 0: name the model's device explicitly.
            where = next(evaluated.parameters()).device
            with torch.cuda.device(where):
                stream = torch.cuda.Stream(device=where)
                stream.wait_event(ready)
                with torch.cuda.stream(stream):
                    embeddings = _embed_valid(run, evaluated)
        else:
            embeddings = _embed_valid(run, evaluated)
        row = _row(epoch, summary, steps, timing, _valid_metrics(run, embeddings, began), params)
        result.history.append(row)
        _log_row(row)
        if saved is not None and checkpoint_path is not None:
            copied, event = saved
            run.writer.write_snapshot(checkpoint_path,
                                      {**copied, "history": list(result.history)}, event)

    run.background.start(finish)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------
# Outputs


def metrics_csv(history: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if row.get(k) is None else repr(row[k]) if isinstance(row[k], float)
                         else row[k] for k in METRIC_COLUMNS})
    return out.getvalue()


def plot_curve(history: list[dict[str, Any]], setting: str, path: Path) -> None:
    """Loss terms and validation MAP@R per epoch, titled with the setting in words."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]

    def series(name: str) -> list[float] | None:
        values = [row.get(name) for row in history]
        return None if all(v is None for v in values) else [math.nan if v is None else v
                                                           for v in values]

    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    words = setting_title(setting)
    for name, label in (("loss", "total loss"), ("ms_loss", "MultiSimilarity term"),
                        ("confusion_loss", "confusion term"), ("center_loss", "center term")):
        values = series(name)
        if values is not None:
            left.plot(epochs, values, marker="o", label=label)
    fig.suptitle(f"Training of {words} [{setting}]", fontsize=10)
    left.set(xlabel="epoch", ylabel="loss, mean per training step", title="training loss")
    left.legend()
    for name, label, style in (
            ("nonperson_map_at_r", "non-person MAP@R (valid)", "-o"),
            ("person_map_at_r", "person-query MAP@R (valid)", "--s"),
            ("person_pairs_above_margin", "person pairs above margin (train)", ":^")):
        values = series(name)
        if values is not None:
            right.plot(epochs, values, style, label=label)
    right.set(xlabel="epoch", ylabel="fraction (1 = all)", ylim=(-0.03, 1.03),
              title="retrieval (valid) and person pairs (train)")
    right.legend()
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def write_model_dir(out_dir: Path, result: FitResult, job: TrainJob,
                    tuned_from: str | None) -> None:
    """The setting's model folder, replaced whole (weights, metrics, curve, parameters)."""
    record = {
        "setting": job.setting, "params": job.params, "tuned_from": tuned_from,
        "training": job.training, "trunk": job.trunk_cfg, "seed": job.seed,
        "input_size": list(result.model.input_size), "train_items": result.train_items,
        "epochs": len(result.history),
    }
    with atomic_directory(out_dir) as tmp:
        save_embedding_model(result.model, tmp)
        (tmp / METRICS_FILE).write_text(metrics_csv(result.history))
        plot_curve(result.history, job.setting, tmp / CURVE_FILE)
        (tmp / PARAMS_FILE).write_text(json.dumps(record, sort_keys=True, indent=2) + "\n")


def train_setting(job: TrainJob, out_dir: Path, checkpoint_dir: Path,
                  tuned_from: str | None = None) -> FitResult:
    """Train (or finish training) one setting and write its model folder.

    The checkpoint is removed once the outputs are in place: it has served its purpose,
    and a later forced rerun must start from the pretrained trunk again.
    """
    result = fit(job, int(job.training["epochs"]), checkpoint_dir)
    if result.rank == 0:
        write_model_dir(Path(out_dir), result, job, tuned_from)
        (Path(checkpoint_dir) / CHECKPOINT).unlink(missing_ok=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return result

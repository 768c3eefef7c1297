"""Training on tiny real models and crops: sampler, validation, checkpoints, resume, DDP maths."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from training_fixtures import (
    CONFUSION,
    PERSON,
    TIMM_TINY,
    TORCHVISION_TINY,
    TRAINING,
    make_job,
    make_split,
)

import overlearning.train.gpu_augment as ga
import overlearning.train.loop as training
from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import FolderImages
from overlearning.data.crop_sets import Item
from overlearning.models.cache import load_state_dict
from overlearning.models.embedder import build_embedding_model
from overlearning.models.losses import MultiSimilarityConfusionLoss
from overlearning.train.async_checkpoint import CheckpointWriter
from overlearning.train.loader import MPerClassEpochSampler

REPO = Path(__file__).resolve().parent.parent
TIMINGS = {"images_per_s", "data_s", "compute_s", "validation_s", "peak_memory_mb"}
MS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}


class Interrupted(Exception):
    """Stands for SLURM killing the job right after an epoch's checkpoint."""


def _without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in history]


# ---------------------------------------------------------------------------- sampler


def test_sampler_gives_m_per_class_reproducibly_and_slices_global_batches() -> None:
    labels = np.repeat(np.arange(10), 5)
    one = MPerClassEpochSampler(labels, m=2, length=len(labels), batch_size=8, seed=3)
    order = list(one)
    assert order == list(MPerClassEpochSampler(labels, m=2, length=50, batch_size=8, seed=3))
    assert order != list(one)  # the next epoch draws anew
    assert len(order) == len(one) == 40  # whole global batches only
    for start in range(0, len(order), 8):
        counts = np.bincount(labels[order[start:start + 8]], minlength=10)
        assert set(counts.tolist()) <= {0, 2, 4}
    ranks = [MPerClassEpochSampler(labels, m=2, length=50, batch_size=8, seed=3, rank=r,
                                   world_size=2) for r in range(2)]
    parts = [list(r) for r in ranks]
    assert all(len(p) == len(r) == 20 for p, r in zip(parts, ranks, strict=True))
    interleaved = [i for b in range(5) for p in parts for i in p[4 * b:4 * b + 4]]
    assert interleaved == order
    with pytest.raises(ValueError, match="multiple"):
        MPerClassEpochSampler(labels, m=4, length=50, batch_size=8, seed=3, world_size=3)


def test_sampler_state_continues_the_same_sequence() -> None:
    labels = np.repeat(np.arange(6), 4)
    running = MPerClassEpochSampler(labels, m=2, length=24, batch_size=4, seed=9)
    list(running)
    state = running.state_dict()
    expected = [list(running), list(running)]
    restored = MPerClassEpochSampler(labels, m=2, length=24, batch_size=4, seed=0)
    restored.load_state_dict(state)
    assert [list(restored), list(restored)] == expected


# ------------------------------------------------------------------------- validation


def test_validation_metrics_are_pml_map_at_r_on_the_right_sets() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([1, 1, 1, 2, 2, 3, 3, 3, 8, 8, 9, 9])
    persons = np.isin(labels, [8, 9])
    emb = rng.normal(size=(len(labels), 4)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    got = training.validation_metrics(emb, labels, persons)
    calc = AccuracyCalculator(include=("mean_average_precision_at_r",), k="max_bin_count",
                              device=torch.device("cpu"))
    nonperson = calc.get_accuracy(emb[~persons], labels[~persons], emb[~persons],
                                  labels[~persons], ref_includes_query=True)
    reference = np.concatenate([emb[persons], emb[~persons]])
    person = calc.get_accuracy(emb[persons], labels[persons], reference,
                               np.concatenate([labels[persons], labels[~persons]]),
                               ref_includes_query=True)
    assert got["nonperson_map_at_r"] == pytest.approx(nonperson["mean_average_precision_at_r"])
    assert got["person_map_at_r"] == pytest.approx(person["mean_average_precision_at_r"])
    # Perfectly separated embeddings: 1; nothing to retrieve: NaN.
    onehot = np.eye(12, dtype=np.float32)[[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]]
    assert training.validation_metrics(onehot, labels, persons) == {
        "nonperson_map_at_r": 1.0, "person_map_at_r": 1.0}
    lone = training.validation_metrics(emb[[0, 1, 8]], labels[[0, 1, 8]], persons[[0, 1, 8]])
    assert np.isnan(lone["person_map_at_r"])


# --------------------------------------------------------------- training and resume


def test_training_writes_the_model_folder(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    out, checkpoints = tmp_path / "results" / "models" / "test", tmp_path / "ckpt"
    out.mkdir(parents=True)  # Snakemake makes the folder before the job
    result = training.train_setting(job, out, checkpoints, tuned_from="tuning/best.json")
    assert sorted(p.name for p in out.iterdir()) == [
        "curve.png", "embedder.safetensors", "metrics.csv", "params.json", "trunk.safetensors"]
    assert not (checkpoints / training.CHECKPOINT).exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["test"]  # no temporary left
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",") == training.METRIC_COLUMNS and len(lines) == 3
    for row in result.history:
        assert 0 <= row["nonperson_map_at_r"] <= 1 and 0 <= row["person_map_at_r"] <= 1
        assert 0 <= row["person_pairs_above_margin"] <= 1 and row["images_per_s"] > 0
        assert row["loss"] == pytest.approx(row["ms_loss"] + row["confusion_loss"], rel=1e-5)
    params = json.loads((out / "params.json").read_text())
    assert params["tuned_from"] == "tuning/best.json" and params["input_size"] == [32, 32]
    assert params["train_items"] == 6 * 5 + 3 * 4  # persons are trained with
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trunk = load_state_dict(out / "trunk.safetensors")
    pretrained = load_state_dict(tmp_path / "cache" / "timm_clip" / "trunk.safetensors")
    assert trunk.keys() == pretrained.keys()
    assert any(not torch.equal(trunk[k], pretrained[k]) for k in trunk)  # it trained


def test_baseline_setting_trains_without_persons(tmp_path: Path) -> None:
    params = {"trunk": "torchvision_vit", "train_persons": False, "loss": "ms",
              "lr": 1e-3, "lr_embed": 1e-3}
    result = training.fit(make_job(tmp_path, params), epochs=1)
    assert result.train_items == 6 * 5
    assert result.history[0]["confusion_loss"] is None
    assert result.history[0]["loss"] == pytest.approx(result.history[0]["ms_loss"])


@pytest.mark.parametrize("threads", [1, 2], ids=["main-process-loading", "one-worker"])
def test_resume_after_interruption_gives_the_same_weights(
        tmp_path: Path, threads: int, capfd: pytest.CaptureFixture) -> None:
    # threads=2 leaves one loader worker (make_job's keywords are training keys).
    job = dataclasses.replace(make_job(tmp_path, num_workers=1), threads=threads)
    job.training["epochs"] = 3
    uninterrupted = training.fit(job, 3, tmp_path / "a")
    assert "resumed from checkpoint" not in capfd.readouterr().err

    def kill_after_two(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        training.fit(job, 3, tmp_path / "b", on_epoch_end=kill_after_two)
    resumed = training.fit(job, 3, tmp_path / "b")
    assert "resumed from checkpoint: epoch 3\n" in capfd.readouterr().err
    expected, got = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert _without_timings(resumed.history) == _without_timings(uninterrupted.history)
    # A finished checkpoint: nothing left to train, the same model comes back.
    again = training.fit(job, 3, tmp_path / "b")
    assert all(torch.equal(expected[k], v) for k, v in again.model.state_dict().items())


def test_two_runs_write_identical_weights(tmp_path: Path) -> None:
    job = make_job(tmp_path, epochs=1)
    for name in ("a", "b"):
        training.train_setting(job, tmp_path / name, tmp_path / f"ckpt-{name}")
    for name in ("trunk.safetensors", "embedder.safetensors", "params.json", "curve.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_checkpoint_of_other_parameters_or_unreadable_is_ignored(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    job = make_job(tmp_path)
    training.fit(job, 1, tmp_path / "ckpt")
    other = make_job(tmp_path, {**CONFUSION, "lr": 5e-4})
    result = training.fit(other, 1, tmp_path / "ckpt")
    err = capfd.readouterr().err
    assert "written for other parameters" in err and "resumed" not in err
    assert len(result.history) == 1
    (tmp_path / "ckpt" / training.CHECKPOINT).write_bytes(b"truncated")
    training.fit(other, 1, tmp_path / "ckpt")
    assert "ignoring unreadable checkpoint" in capfd.readouterr().err


def test_bad_training_inputs_name_the_file(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    with pytest.raises(WorkflowInputError, match="fg_instances_cropped.json"):
        training.fit(dataclasses.replace(job, train_dir=tmp_path / "nowhere"), 1)
    small = tmp_path / "small"
    make_split(small, [(1, 1, 2), (2, 1, 2)])
    with pytest.raises(WorkflowInputError, match="cannot fill a batch"):
        training.fit(dataclasses.replace(job, train_dir=small), 1)
    tuned = tmp_path / "best.json"
    tuned.write_text(json.dumps({"params": {"lr": 1e-4, "center_lr": 0.1}}))
    with pytest.raises(WorkflowInputError, match="center_lr"):
        training.resolve_params(CONFUSION, tuned)
    tuned.write_text(json.dumps({"params": {"lr": 1e-4, "margin": 0.05}}))
    assert training.resolve_params(CONFUSION, tuned) == {**CONFUSION, "lr": 1e-4, "margin": 0.05}


@pytest.mark.slow
def test_script_killed_by_the_cluster_resumes(tmp_path: Path) -> None:
    """SIGKILL the real program after its first checkpoint; the rerun picks it up."""
    job = make_job(tmp_path)
    out, checkpoints = tmp_path / "out", tmp_path / "ckpt"

    def command(epochs: int) -> list[str]:
        return [sys.executable, str(REPO / "scripts" / "train.py"), "--setting", "test",
                "--params", json.dumps(CONFUSION),
                "--training", json.dumps({**TRAINING, "epochs": epochs}),
                "--trunk", json.dumps(TIMM_TINY), "--cache", str(job.cache),
                "--train-dir", str(job.train_dir), "--valid-dir", str(job.valid_dir),
                "--person-category", str(PERSON), "--seed", "5", "--out", str(out),
                "--checkpoints", str(checkpoints), "--tuned"]

    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    with open(tmp_path / "first.log", "wb") as log:
        # Many epochs: the kill comes long before the end.
        proc = subprocess.Popen(command(30), stderr=log, stdout=log, env=env)
        try:
            while not (checkpoints / training.CHECKPOINT).exists() and proc.poll() is None:
                time.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert not out.exists()
    # The epoch count is not part of what a checkpoint must agree on.
    done = subprocess.run(command(3), capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = [line for line in done.stderr.splitlines() if line.startswith("resumed from")]
    assert len(resumed) == 1 and resumed[0] in {"resumed from checkpoint: epoch 2",
                                                "resumed from checkpoint: epoch 3"}
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3


# ------------------------------------------------------------------ distributed maths


def _ddp_worker(rank: int, init_file: str, emb: torch.Tensor, labels: torch.Tensor,
                results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    layer = torch.nn.Linear(emb.shape[1], 5)
    net = torch.nn.parallel.DistributedDataParallel(layer)
    loss_fn = MultiSimilarityConfusionLoss([7], weight=10.0, gamma=20.0, margin=0.0, **MS)
    half = len(emb) // 2
    out = net(emb[rank * half:(rank + 1) * half])
    procs = training.Processes(rank=rank, world_size=2)
    all_emb, all_labels = training._gather(out, labels[rank * half:(rank + 1) * half], procs)
    loss = loss_fn(all_emb, all_labels)
    loss.backward()
    results[rank] = (loss.item(), layer.weight.grad.clone(), all_labels.tolist())
    dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters import the whole stack
def test_distributed_step_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(4)
    emb = torch.randn(8, 6, generator=generator)
    labels = torch.tensor([1, 1, 7, 7, 2, 2, 7, 9])
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 5)
    loss_fn = MultiSimilarityConfusionLoss([7], weight=10.0, gamma=20.0, margin=0.0, **MS)
    expected = loss_fn(layer(emb), labels)
    expected.backward()
    results = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), emb, labels, results), nprocs=2)
    for rank in range(2):
        loss, grad, gathered = results[rank]
        assert gathered == labels.tolist()
        assert loss == pytest.approx(expected.item(), rel=1e-6)
        assert torch.allclose(grad, layer.weight.grad, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------ augmentation on the device


def _spec_of(trunk_cfg: dict) -> ga.AugmentSpec:
    return ga.augment_spec(build_embedding_model(trunk_cfg, 8).train_transform)


def test_device_augmentation_takes_the_models_own_train_transform() -> None:
    from timm.data.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    spec = _spec_of(TIMM_TINY)
    # timm's transforms_imagenet_train defaults for this model's data config.
    assert spec.size == (32, 32) and spec.scale == (0.08, 1.0)
    assert spec.ratio == pytest.approx((3 / 4, 4 / 3)) and spec.interpolation == "bicubic"
    assert spec.hflip == 0.5
    assert spec.brightness == spec.contrast == spec.saturation == pytest.approx((0.6, 1.4))
    assert spec.mean == pytest.approx(OPENAI_CLIP_MEAN) and spec.std == pytest.approx(OPENAI_CLIP_STD)
    twin = _spec_of(TORCHVISION_TINY)
    assert twin.scale == (0.8, 1.0) and twin.brightness is None and twin.saturation is None
    with pytest.raises(ValueError, match="RandAugment|not supported"):
        import timm.data

        ga.augment_spec(timm.data.create_transform(32, is_training=True, auto_augment="rand-m9"))


def test_device_augmentation_draws_as_timm_and_torchvision_do() -> None:
    """Same seed policy, many draws: crop area, aspect, flips and jitter match in law."""
    import random

    from scipy import stats
    from timm.data.transforms import RandomResizedCropAndInterpolation
    from torchvision.transforms import ColorJitter

    spec = _spec_of(TIMM_TINY)
    generator = torch.Generator().manual_seed(0)
    random.seed(0)
    torch.manual_seed(0)
    for height, width in ((360, 640), (200, 40)):  # a frame; a tall crop (fallbacks)
        ours = np.array([ga.draw_params(spec, height, width, generator)[:5].tolist()
                         for _ in range(3000)])
        image = Image.new("RGB", (width, height))
        timms = np.array([RandomResizedCropAndInterpolation.get_params(
            image, spec.scale, spec.ratio) for _ in range(3000)], dtype=float)
        for column in (0, 1, 2, 3):  # top, left, height, width
            assert stats.ks_2samp(ours[:, column], timms[:, column]).pvalue > 0.001, column
        area = ours[:, 2] * ours[:, 3] / (height * width)
        assert area.min() >= 0.08 * 0.95 and area.max() <= 1.0
        assert (ours[:, 0] + ours[:, 2] <= height).all() and (ours[:, 1] + ours[:, 3] <= width).all()
        assert abs(ours[:, 4].mean() - 0.5) < 0.03  # flips
    draws = np.array([ga.draw_params(spec, 50, 50, generator).tolist() for _ in range(3000)])
    jitter = ColorJitter(0.4, 0.4, 0.4)
    theirs = np.array([[float(v) for v in ColorJitter.get_params(
        jitter.brightness, jitter.contrast, jitter.saturation, None)[1:4]] for _ in range(3000)])
    for k in range(3):
        assert 0.6 <= draws[:, 5 + k].min() and draws[:, 5 + k].max() <= 1.4
        assert stats.ks_2samp(draws[:, 5 + k], theirs[:, k]).pvalue > 0.001
    orders = {tuple(row) for row in draws[:, 8:11].astype(int).tolist()}
    assert orders == {(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)}


def test_device_augmentation_matches_the_pil_pipeline_for_the_same_draws(tmp_path: Path) -> None:
    """The batched tensor ops give what PIL gives for the same crop, flip and jitter."""
    from torchvision.transforms import functional as F

    spec = _spec_of({**TIMM_TINY, "overrides": {**TIMM_TINY["overrides"], "img_size": 64}})
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:120, 0:90]
    pixels = np.stack([(xs * 2) % 255, (ys * 2) % 255, ((xs + ys) * 3) % 255], -1)
    pixels = np.clip(pixels + rng.normal(0, 20, pixels.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=95)
    dataset = ga.DecodedCropDataset(
        [Item("a.jpg", 1, False, images=FolderImages(tmp_path))], spec)
    samples = [dataset[(0, seed)] for seed in range(12)]
    images, labels = ga.augment(ga.pack(samples), spec, torch.device("cpu"))
    assert images.shape == (12, 3, 64, 64) and labels.tolist() == [1] * 12
    adjust = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)
    errors = []
    for image, (_, params, _) in zip(images, samples, strict=True):
        top, left, h, w = (int(v) for v in params[:4])
        reference = F.resized_crop(Image.open(tmp_path / "a.jpg").convert("RGB"), top, left, h, w,
                                   list(spec.size), F.InterpolationMode.BICUBIC)
        if params[4] > 0.5:
            reference = F.hflip(reference)
        for k in params[8:11].int().tolist():
            reference = adjust[k](reference, float(params[5 + k]))
        reference = F.normalize(F.to_tensor(reference), spec.mean, spec.std)
        errors.append((image - reference).abs())
    # Normalised units (1/255 of a pixel is ~0.015): PIL rounds to uint8 after every
    # step, the decoders differ slightly; a wrong flip, order or crop costs > 0.2.
    assert max(float(e.mean()) for e in errors) < 0.04
    assert max(float(e.max()) for e in errors) < 0.2


def test_augmentation_seeds_follow_the_global_batch_not_the_process() -> None:
    labels = np.repeat(np.arange(8), 4)

    def seeded(rank: int, world: int) -> ga.SeededSampler:
        inner = MPerClassEpochSampler(labels, m=2, length=32, batch_size=8, seed=1, rank=rank,
                                      world_size=world)
        sampler = ga.SeededSampler(inner, seed=5, batch_size=8, rank=rank, world_size=world)
        sampler.set_epoch(3)
        return sampler

    one = list(seeded(0, 1))
    parts = [list(seeded(r, 2)) for r in range(2)]
    assert [x for b in range(4) for p in parts for x in p[4 * b:4 * b + 4]] == one
    assert len({s for _, s in one}) == len(one)
    other_epoch = seeded(0, 1)
    other_epoch.set_epoch(4)
    assert [s for _, s in other_epoch] != [s for _, s in one]


def test_device_pipeline_trains_and_resumes_bit_identically_with_persistent_workers(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    job = dataclasses.replace(make_job(tmp_path, augment="device", num_workers=1), threads=2)
    uninterrupted = training.fit(job, 2, tmp_path / "a")

    def kill_after_one(epoch: int, row: dict) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        training.fit(job, 2, tmp_path / "b", on_epoch_end=kill_after_one)
    resumed = training.fit(job, 2, tmp_path / "b")
    assert "resumed from checkpoint: epoch 2\n" in capfd.readouterr().err
    expected, got = uninterrupted.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert _without_timings(resumed.history) == _without_timings(uninterrupted.history)
    # Workers draw nothing themselves: main-process loading trains the same model.
    inline = training.fit(dataclasses.replace(job, threads=1), 2)
    assert all(torch.equal(expected[k], v) for k, v in inline.model.state_dict().items())


def test_checkpoint_writer_works_in_the_background_on_a_copy(tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()
    written: list = []

    def slow_write(path: Path, state: dict) -> None:
        started.set()
        release.wait(10)
        written.append((path, state))

    writer = CheckpointWriter(slow_write)
    weights = torch.zeros(3)
    writer.save(tmp_path / "c.pt", {"w": weights, "epoch": 1})
    assert started.wait(10) and not written  # save() returned while the write waits
    weights += 1  # the next step updates in place
    release.set()
    writer.wait()
    assert written[0][1]["epoch"] == 1 and torch.equal(written[0][1]["w"], torch.zeros(3))

    def broken(path: Path, state: dict) -> None:
        raise OSError("disk full")

    failing = CheckpointWriter(broken)
    failing.save(tmp_path / "d.pt", {"w": weights})
    with pytest.raises(OSError, match="disk full"):
        failing.wait()
    real = CheckpointWriter()
    real.save(tmp_path / "e.pt", {"w": weights})
    real.wait()
    assert torch.equal(torch.load(tmp_path / "e.pt")["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.pt"]  # no temporary left


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first found, from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


@pytest.mark.slow  # torchrun and two training processes
def test_two_processes_under_torchrun_train_checkpoint_resume_and_match_one(tmp_path: Path) -> None:
    """scripts/train.py --processes 2 on the CPU (gloo), as the rule starts it.

    Killed after its first checkpoint and rerun, it resumes and ends where one process
    with the same global batch ends: the device pipeline draws per global position, so
    only the order of floating-point sums differs (gradients all-reduced, batch halves).
    """
    job = make_job(tmp_path, augment="device")
    out, checkpoints = tmp_path / "out", tmp_path / "ckpt"

    def command(epochs: int) -> list[str]:
        return [sys.executable, str(REPO / "scripts" / "train.py"), "--setting", "test",
                "--params", json.dumps(CONFUSION),
                "--training", json.dumps({**job.training, "epochs": epochs, "processes": 2}),
                "--trunk", json.dumps(TIMM_TINY), "--cache", str(job.cache),
                "--train-dir", str(job.train_dir), "--valid-dir", str(job.valid_dir),
                "--person-category", str(PERSON), "--seed", str(job.seed), "--out", str(out),
                "--checkpoints", str(checkpoints), "--threads", "2", "--processes", "2"]

    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(command(30), stderr=log, stdout=log, env=env)
        try:
            while not (checkpoints / training.CHECKPOINT).exists() and proc.poll() is None:
                time.sleep(0.05)
        finally:
            # As SLURM ends a job: torchrun and its ranks (torchrun starts each rank in a
            # session of its own, so its process group would miss them).
            for pid in [*_descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
    assert (checkpoints / training.CHECKPOINT).exists(), (tmp_path / "first.log").read_text()[-3000:]
    assert not out.exists()
    done = subprocess.run(command(2), capture_output=True, text=True, env=env, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 alone says it resumed (one line per job), at epoch 2 or 3.
    resumed = re.findall(r"resumed from checkpoint: epoch (\d+)", done.stderr)
    assert resumed in (["2"], ["3"]), done.stderr[:4000]
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 2
    assert not (checkpoints / training.CHECKPOINT).exists()

    one = training.fit(job, 2)
    two = load_state_dict(out / "trunk.safetensors")
    for key, value in one.model.trunk.state_dict().items():
        # Stated tolerance (docs/training.md): 2e-4 absolute on every weight after two
        # epochs at lr 1e-3, a fifth of one Adam step (observed: 3.8e-5).
        assert torch.allclose(two[key], value, rtol=0, atol=2e-4), key
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    for row, expected in zip(rows, one.history, strict=True):
        assert float(row["loss"]) == pytest.approx(expected["loss"], rel=1e-4)

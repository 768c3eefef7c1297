"""Embedding sets: a real tiny timm ViT + Linear embeds real image files once, in sorted
order, into the .npz layout of docs/architecture.md."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from overlearning.core.errors import WorkflowInputError
from overlearning.core.packs import pack_of_files, write_pack
from overlearning.data.crop_sets import load_person_set
from overlearning.evaluate.embeddings import (
    NPZ_KEYS,
    embed_items,
    embedding_set_from_items,
    items_for_set,
    load_embedding_set,
    save_embedding_set,
)
from overlearning.models.embedder import build_embedding_model, save_embedding_model

REPO = Path(__file__).resolve().parent.parent

TINY_TIMM = {"kind": "timm", "name": "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
             "overrides": {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 64}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_embedding_model(TINY_TIMM, 8).eval()


def _packed(folder):
    """The folder's images as a pack ``<folder>.zip`` (what the datasets rules write)."""
    pack = folder.with_name(folder.name + ".zip")
    pack_of_files(pack, {p.name: p for p in folder.iterdir()})
    return pack


def _person_folder(root, names):
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(root / name)
    return _packed(root)


def _crop_split(split_dir):
    """A two-video crop split with one person (category 26) and two other objects."""
    names = ["vb/00010_3.jpg", "va/00005_1.jpg", "va/00010_2.jpg"]
    images, annotations = [], []
    with write_pack(split_dir / "foregroundImages_cropped.zip") as pack:
        for i, name in enumerate(names, start=1):
            encoded = io.BytesIO()
            Image.new("RGB", (20 + i, 30), (50 * i, 20, 200)).save(encoded, format="JPEG")
            pack.add(name, encoded.getvalue())
            images.append({"id": i, "file_name": name, "width": 20 + i, "height": 30})
            annotations.append({"id": i, "image_id": i, "category_id": 26 if i == 2 else 5})
    (split_dir / "fg_instances_cropped.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": []}))
    return split_dir


def test_person_folder_is_embedded_once_per_image_in_sorted_order(tmp_path, model):
    names = ["0002_c2_001.jpg", "0001_c1_000.jpg", "0001_c3_004.jpg"]
    items = items_for_set("pack", _person_folder(tmp_path / "query", names))
    calls = []
    hook = model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        emb = embed_items(model, items, batch_size=2)
    finally:
        hook.remove()
    assert sum(calls) == 3  # every image through the model exactly once
    data = embedding_set_from_items(items, emb)
    assert data.files.tolist() == sorted(names)
    assert data.labels.tolist() == [1, 1, 2]
    assert data.cameras.tolist() == [1, 3, 2]
    assert data.persons.all()
    assert data.embeddings.shape == (3, 8) and data.embeddings.dtype == np.float32
    # Same numbers as running the model on the transformed image directly.
    with torch.inference_mode():
        direct = model(model.transform(items[0].open_image().convert("RGB"))[None])
    np.testing.assert_allclose(data.embeddings[0], direct[0].numpy(), rtol=1e-5, atol=1e-6)


def test_crop_split_marks_persons_from_the_index(tmp_path, model):
    items = items_for_set("crops", _crop_split(tmp_path / "test"), person_category=26)
    data = embedding_set_from_items(items, embed_items(model, items, batch_size=4))
    assert data.files.tolist() == ["va/00005_1.jpg", "va/00010_2.jpg", "vb/00010_3.jpg"]
    assert data.labels.tolist() == [1, 2, 3]
    assert data.persons.tolist() == [True, False, False]  # va/00005_1 is annotation 2
    assert (data.cameras == -1).all()


def test_npz_round_trip_is_exact_and_byte_reproducible(tmp_path):
    rng = np.random.default_rng(1)
    items = load_person_set(_person_folder(tmp_path / "g", ["0001_c1_a.jpg", "0003_c2_b.jpg"]))
    data = embedding_set_from_items(items, rng.normal(size=(2, 5)))
    save_embedding_set(tmp_path / "a.npz", data)
    save_embedding_set(tmp_path / "b.npz", data)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(NPZ_KEYS)
    back = load_embedding_set(tmp_path / "a.npz")
    for key in NPZ_KEYS:
        np.testing.assert_array_equal(getattr(back, key), getattr(data, key))


def test_bad_inputs_stop_with_the_file(tmp_path, model):
    _person_folder(tmp_path / "q", ["0001_c1_a.jpg"])
    (tmp_path / "q/0002_c1_b.jpg").write_bytes(b"not a jpeg")
    folder = _packed(tmp_path / "q")
    with pytest.raises(WorkflowInputError, match=r"q\.zip:0002_c1_b.jpg"):
        embed_items(model, items_for_set("pack", folder), batch_size=2)
    np.savez(tmp_path / "short.npz", embeddings=np.zeros((2, 3), np.float32),
             labels=np.zeros(2, np.int64))
    with pytest.raises(WorkflowInputError, match="lacks files, persons, cameras"):
        load_embedding_set(tmp_path / "short.npz")


def test_embed_script_with_a_saved_model(tmp_path, model):
    """One job embeds several sets with the model loaded once; each equals embedding alone."""
    save_embedding_model(model, tmp_path / "models" / "ms")
    gallery = _person_folder(tmp_path / "gallery", ["0001_c1_a.jpg", "0002_c2_b.jpg"])
    query = _person_folder(tmp_path / "query", ["0001_c2_c.jpg"])
    outs = [tmp_path / "emb" / "x_gallery.npz", tmp_path / "emb" / "x_query.npz"]
    cmd = [sys.executable, str(REPO / "scripts" / "embed.py"),
           "--model-dir", str(tmp_path / "models" / "ms"), "--trunk", json.dumps(TINY_TIMM),
           "--embedding-dim", "8", "--set", str(outs[0]), "pack", str(gallery), "-", "-",
           "--set", str(outs[1]), "pack", str(query), "-", "-", "--batch-size", "4"]
    subprocess.run(cmd, check=True, cwd=REPO, capture_output=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    for out, folder in zip(outs, (gallery, query), strict=True):
        data = load_embedding_set(out)
        items = items_for_set("pack", folder)
        assert list(data.files) == [item.name for item in items]
        np.testing.assert_allclose(data.embeddings, embed_items(model, items, 4),
                                   rtol=1e-5, atol=1e-6)


def _clustered_folder(root, labels: int, per_label: int, noise: float = 14.0):
    """Person images whose labels are visibly distinct: a coarse colour layout per label,
    each image with its own pixel noise."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for label in range(1, labels + 1):
        base = np.kron(rng.integers(0, 255, (4, 2, 3)), np.ones((12, 12, 1)))
        for j in range(per_label):
            noisy = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(root / f"{label:04d}_c{j + 1}_{j}.jpg")
    return _packed(root)


def _spread_model():
    """The tiny model with its trunk's matrices drawn 10x wider than timm's init. A freshly
    initialised ViT maps every image to nearly one direction (cosines 0.9999, dominated by
    the class and position tokens), where any rounding reorders everything; a trained one
    separates images, as this one does (cosines spread +-0.3)."""
    torch.manual_seed(0)
    spread = build_embedding_model(TINY_TIMM, 8).eval()
    with torch.no_grad():
        for name, param in spread.named_parameters():
            if name.startswith("trunk.") and param.dim() >= 2:
                torch.nn.init.normal_(param, std=0.2)
    return spread


def test_loader_workers_keep_order_and_bf16_keeps_the_metrics(tmp_path):
    """Workers change nothing; bf16 autocast (what CUDA runs) moves MAP and MAP@R by < 1e-3
    (the tolerance docs/performance.md states) on a model that separates the images."""
    from overlearning.core.precision import precision_for
    from overlearning.evaluate.metrics import evaluate_retrieval
    from overlearning.evaluate.retrieval_inputs import RetrievalInputs

    model = _spread_model()
    items = items_for_set("pack", _clustered_folder(tmp_path / "g", 10, 6))
    fp32 = embed_items(model, items, batch_size=16)
    np.testing.assert_array_equal(embed_items(model, items, 16, num_workers=2), fp32)
    bf16 = embed_items(model, items, batch_size=16, precision="bf16")
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)  # really bf16
    scores = []
    for emb in (fp32, bf16):
        data = embedding_set_from_items(items, emb)
        inputs = RetrievalInputs(queries=data, references=data,
                                 kept=np.ones(len(data), dtype=bool),
                                 self_index=np.arange(len(data)),
                                 part_of=np.zeros(len(data), dtype=np.int64))
        result = evaluate_retrieval(inputs).study
        scores.append((result.mean_average_precision, result.mean_average_precision_at_r))
    assert 0.5 < scores[0][0] < 1.0  # a ranking with something to lose
    np.testing.assert_allclose(scores[1], scores[0], atol=1e-3)
    # A CPU job runs at fp32 whatever the config says; CUDA at the configured precision.
    assert precision_for("cpu", "bf16") == "fp32" and precision_for("cuda:0", "bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        precision_for("cuda", "fp8")

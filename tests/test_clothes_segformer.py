"""The authors' default clothes probe: a tiny random SegFormer with the published labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import SegformerImageProcessor

from overlearning.core.errors import WorkflowInputError
from overlearning.core.image_io import image_names, read_rgb
from overlearning.core.packs import open_pack
from overlearning.detect.clothes import masked_crop, run_clothes_probe, segformer_probes
from overlearning.models.segformer import (
    ATR_LABELS,
    build_segformer,
    load_segformer,
    prepare_segformer_weights,
    segment_labels,
)
from tests.detector_fixtures import write_person_queries
from tests.training_fixtures import SEGFORMER_TINY

TINY = SEGFORMER_TINY
SIZE = 64


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    files = prepare_segformer_weights(TINY, folder, "random", seed=5)
    (folder / "manifest.json").write_text(json.dumps(files))
    return folder


@pytest.fixture
def queries(tmp_path: Path) -> Path:
    return write_person_queries(tmp_path / "foreground_query")


def test_full_size_is_segformer_b2_with_the_atr_labels():
    model = build_segformer({**TINY, "overrides": {}})
    assert model.config.hidden_sizes == [64, 128, 320, 512]
    assert model.config.depths == [3, 4, 6, 3]
    assert model.config.id2label[4] == "Upper-clothes" and model.config.id2label[7] == "Dress"
    assert model.decode_head.classifier.out_channels == 18


def test_labels_equal_the_image_processor_path(cache: Path, queries: Path):
    """Our preprocessing gives the classes transformers' own processor + upsampling gives."""
    model = load_segformer(TINY, cache)
    image = read_rgb(queries / "0001_c1_a.png")
    ours = segment_labels(model, image, SIZE)
    processor = SegformerImageProcessor(size={"height": SIZE, "width": SIZE})
    with torch.no_grad():
        logits = model(**processor(images=image, return_tensors="pt")).logits
    upsampled = torch.nn.functional.interpolate(logits, size=image.shape[:2], mode="bilinear",
                                                align_corners=False)
    assert ours.shape == image.shape[:2]
    agreement = (upsampled.argmax(dim=1)[0].numpy() == ours).mean()
    assert agreement > 0.99, agreement


def test_probe_keeps_exactly_the_chosen_classes(cache: Path, queries: Path, tmp_path: Path):
    model = load_segformer(TINY, cache)
    names = image_names(queries)
    first = segment_labels(model, read_rgb(queries / names[0]), SIZE)
    label = ATR_LABELS[int(np.bincount(first.ravel()).argmax())]
    out = tmp_path / "probe.zip"
    record = segformer_probes(model, queries, names, out, labels=[label], size=SIZE)
    for name in names:
        image = read_rgb(queries / name)
        mask = segment_labels(model, image, SIZE) == ATR_LABELS.index(label)
        entry = record["images"][name]
        assert entry["garment_pixels"] == {label: int(mask.sum())}
        if mask.any():
            assert entry["outcome"] == "cropped"
            assert np.array_equal(open_pack(out).read_rgb(name), masked_crop(image, mask))
        else:
            assert entry["outcome"] == "skipped"
    assert record["summary"]["cropped"] >= 1


def test_unknown_label_is_named(cache: Path, queries: Path, tmp_path: Path):
    model = load_segformer(TINY, cache)
    with pytest.raises(WorkflowInputError, match="Upper-shirt"):
        segformer_probes(model, queries, image_names(queries), tmp_path / "p",
                         labels=["Upper-shirt"], size=SIZE)


def test_weights_built_for_another_config_are_refused(cache: Path):
    other = {**TINY, "overrides": {**TINY["overrides"], "decoder_hidden_size": 16}}
    with pytest.raises(WorkflowInputError, match="rerun the weights rule"):
        load_segformer(other, cache)


def test_rule_entry_uses_the_segmenter_by_method(cache: Path, queries: Path, tmp_path: Path):
    clothes = {"method": "segformer", "segformer_labels": list(ATR_LABELS), "segformer_size": SIZE,
               "on_missing": "skip"}
    out, record = tmp_path / "clothes.zip", tmp_path / "clothes.json"
    summary = run_clothes_probe(queries, out, record, {"segformer_clothes": TINY}, clothes, {}, {},
                                cache)
    # Every label kept: the whole image is the garment, so every probe is the image itself.
    assert summary["cropped"] == 2
    for name in image_names(queries):
        assert np.array_equal(open_pack(out).read_rgb(name), read_rgb(queries / name))

"""GroundingDINO detection with a tiny randomly initialised model (local tiny BERT), the
weights cache it is loaded from, sharding and gathering."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from overlearning.core.errors import WorkflowInputError
from overlearning.detect.grounding import (
    GroundingDetector,
    caption_for,
    detect_images,
    gather_shards,
    run_gather,
    set_image_names,
    shard_names,
    size_batches,
)
from overlearning.models.detectors import GD_TEXT_ENCODER, GD_WEIGHTS, load_grounding_dino
from overlearning.models.weights import prepare_model_weights
from tests.conftest import REPO
from tests.detector_fixtures import (
    IMAGE_SIZE,
    MAX_IMAGE_SIZE,
    PROMPTS,
    TINY_MODELS,
    make_cache,
    one_torch_thread,
    write_image,
)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def model(cache: Path):
    return load_grounding_dino(TINY_MODELS, cache)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i in range(5):
        write_image(root / f"img{i}.png", i)
    write_image(root / "tall.png", 9, size=(80, 64))
    return root


def detector(model, box_threshold: float = 0.2, text_threshold: float = 0.1,
             prompts=PROMPTS) -> GroundingDetector:
    return GroundingDetector(model, prompts, box_threshold, text_threshold, IMAGE_SIZE,
                             MAX_IMAGE_SIZE)


def test_random_weights_are_seeded_and_cover_every_prompt(cache: Path, tmp_path: Path) -> None:
    gd = TINY_MODELS["grounding_dino"]
    again = prepare_model_weights("grounding_dino", gd, tmp_path / "again", "random", 0)
    manifest = json.loads((cache / "grounding_dino" / "manifest.json").read_text())
    assert again == manifest
    weights = GD_WEIGHTS.removeprefix("grounding_dino/")
    assert weights in manifest and "text_encoder/vocab.txt" in manifest
    other = prepare_model_weights("grounding_dino", gd, tmp_path / "other", "random", 1)
    assert other[weights] != manifest[weights]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(cache / GD_TEXT_ENCODER))
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    for prompts in (paper["detection"]["prompts"], paper["clothes"]["prompts"]):
        ids = tokenizer(caption_for(prompts))["input_ids"]
        assert tokenizer.unk_token_id not in ids
    # Prompt words are single tokens, as in BERT's own vocabulary.
    assert tokenizer.tokenize("a giant panda") == ["a", "giant", "panda"]
    shutil.rmtree(tmp_path)  # ~160 MB per cache: do not leave them to pytest's tmp retention


def test_caption_convention() -> None:
    assert caption_for(["An airplane", "a bear."]) == "an airplane . a bear ."
    with pytest.raises(WorkflowInputError):
        caption_for(["a dog", " "])


def test_same_detections_as_groundingdino_predict(model, images: Path) -> None:
    from groundingdino.util.inference import predict

    # Random weights make every logit huge; shrinking the text projection of this real
    # model spreads the probabilities so that both thresholds really select.
    original = model.feat_map.weight.detach().clone()
    try:
        with torch.no_grad():
            model.feat_map.weight.mul_(0.002)
        det = detector(model)
        image = Image.open(images / "img0.png").convert("RGB")
        tensor = det.transform(image, None)[0]
        with torch.no_grad():
            probs = model(tensor[None], captions=[det.caption])["pred_logits"].sigmoid()[0]
        best = probs.max(dim=1).values
        box_threshold = float(best.median())
        token_probs = probs[:, : len(det.input_ids)]
        text_threshold = float(token_probs.median())
        det = detector(model, box_threshold, text_threshold)
        ours = det.detect([image])[0]
        boxes, logits, phrases = predict(model, tensor, det.caption, box_threshold,
                                         text_threshold, device="cpu")
    finally:
        with torch.no_grad():
            model.feat_map.weight.copy_(original)
    assert 0 < len(ours) < 10 and len(ours) == len(boxes)
    w, h = image.size
    reference = []
    for (cx, cy, bw, bh), conf, phrase in zip(boxes.tolist(), logits.tolist(), phrases,
                                              strict=True):
        words = [t for t in phrase.split() if t not in ("[CLS]", "[SEP]")]
        reference.append((round(conf, 3), [(cx - bw / 2) * w, (cy - bh / 2) * h,
                                           (cx + bw / 2) * w, (cy + bh / 2) * h], " ".join(words)))
    reference.sort(key=lambda r: -r[0])
    for mine, (conf, box, label) in zip(ours, reference, strict=True):
        assert mine["confidence"] == pytest.approx(conf, abs=1e-3)
        assert mine["box"] == pytest.approx(box, abs=0.011)
        assert mine["label"] == label


def test_label_is_the_prompt_text_above_the_text_threshold(model) -> None:
    det = detector(model, prompts=["a person", "a zebra"])
    tokens = model.tokenizer.convert_ids_to_tokens(det.input_ids)
    assert tokens == ["[CLS]", "a", "person", ".", "a", "zebra", ".", "[SEP]"]
    probs = torch.zeros(256)
    probs[[0, 2, 3, 7]] = 0.9  # [CLS], "person", ".", [SEP]: only "person" is a word
    assert det._label(probs) == "person"
    probs[[4, 5]] = 0.5
    assert det._label(probs) == "person a zebra"
    probs[5] = 0.1  # not above the threshold
    assert det._label(probs) == "person a"


def test_unknown_prompt_words_and_long_captions_are_refused(model) -> None:
    with pytest.raises(WorkflowInputError, match="unknown"):
        detector(model, prompts=["a 猫"])
    with pytest.raises(WorkflowInputError, match="at most 256"):
        detector(model, prompts=["a person"] * 100)


def test_batched_equals_one_by_one(model, images: Path) -> None:
    det = detector(model)
    pair = [Image.open(images / f"img{i}.png").convert("RGB") for i in (1, 2)]
    batched = det.detect(pair)
    singles = [det.detect([image])[0] for image in pair]
    for b, s in zip(batched, singles, strict=True):
        assert len(b) == len(s) > 0
        for x, y in zip(b, s, strict=True):
            assert x["label"] == y["label"]
            assert x["confidence"] == pytest.approx(y["confidence"], abs=1e-3)
            assert x["box"] == pytest.approx(y["box"], abs=0.011)
    with pytest.raises(ValueError, match="one size"):  # same_size batching (the default)
        det.detect([pair[0], pair[0].resize((40, 40))])


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _same(x: dict, y: dict) -> bool:
    """One detection within the stated tolerance of another: label equal, confidence
    within 1e-3, every box side within 0.011 px (the rounding of the stored format)."""
    return (x["label"] == y["label"] and abs(x["confidence"] - y["confidence"]) <= 1e-3
            and all(abs(a - b) <= 0.011 for a, b in zip(x["box"], y["box"], strict=True)))


def test_padded_batches_of_mixed_sizes(model, tmp_path: Path) -> None:
    """``padded`` batching (the authors'). The padding mask keeps images apart: an image
    that needs no padding in the batch gets exactly its detections alone (label, confidence
    within 1e-3, box within 0.011 px), and a padded image's detections depend on how much
    it is padded, never on the other images' content. How far padding moves a padded
    image's detections is a property of the weights (the Swin backbone's windows see the
    padding): trained GroundingDINO was trained on padded batches; this untrained one keeps
    only 20-90% of its boxes, so that part is left to runs with the real weights
    (docs/performance.md). Boxes are scaled by each image's own size."""
    sizes = [(64, 96), (48, 64), (64, 64), (40, 96)]  # the first is the largest both ways
    pictures = []
    for i, size in enumerate(sizes):
        write_image(tmp_path / f"m{i}.png", 20 + i, size=size)
        pictures.append(Image.open(tmp_path / f"m{i}.png").convert("RGB"))
    det = GroundingDetector(model, PROMPTS, 0.2, 0.1, IMAGE_SIZE, MAX_IMAGE_SIZE, "padded")
    mixed = det.detect(pictures)
    alone = det.detect(pictures[:1])[0]
    assert len(mixed[0]) == len(alone) > 0
    assert all(_same(x, y) for x, y in zip(mixed[0], alone, strict=True))
    # Same canvas, other neighbours: the padded images' detections do not change.
    write_image(tmp_path / "other.png", 99, size=sizes[0])
    other = Image.open(tmp_path / "other.png").convert("RGB")
    again = det.detect([other, *pictures[1:]])
    assert again[0] != mixed[0]
    for x_list, y_list in zip(again[1:], mixed[1:], strict=True):
        assert len(x_list) == len(y_list) > 0
        assert all(_same(x, y) for x, y in zip(x_list, y_list, strict=True))
    for image, found in zip(pictures, mixed, strict=True):
        width, height = image.size
        assert all(d["box"][2] <= width + 1 and d["box"][3] <= height + 1 for d in found)
    # Batching by size: padded mixes sizes, same_size keeps them apart.
    names = [f"m{i}.png" for i in range(4)]
    # (width, height) order: 64x48, 64x64, 96x40, 96x64.
    assert size_batches(tmp_path, names, 8, "padded") == [["m1.png", "m2.png", "m3.png",
                                                            "m0.png"]]
    assert len(size_batches(tmp_path, names, 8, "same_size")) == 4
    with pytest.raises(WorkflowInputError, match="detection.batching"):
        GroundingDetector(model, PROMPTS, 0.2, 0.1, IMAGE_SIZE, MAX_IMAGE_SIZE, "ragged")


def test_detections_format(model, images: Path) -> None:
    out = detect_images(detector(model), images, ["img0.png", "tall.png"], 4)
    assert list(out) == ["img0.png", "tall.png"]
    for dets in out.values():
        assert 0 < len(dets) <= TINY_MODELS["grounding_dino"]["overrides"]["num_queries"]
        confidences = [d["confidence"] for d in dets]
        assert confidences == sorted(confidences, reverse=True)
        for d in dets:
            assert set(d) == {"label", "confidence", "box"} and len(d["box"]) == 4
            assert d["box"] == [round(v, 2) for v in d["box"]]
    nothing = detect_images(detector(model, box_threshold=1.0), images, ["img0.png"], 1)
    assert nothing == {"img0.png": []}


def test_size_batches_group_equal_sizes(images: Path) -> None:
    names = sorted(p.name for p in images.iterdir())
    batches = size_batches(images, names, 2)
    assert sorted(sum(batches, [])) == names
    assert ["tall.png"] in batches and all(len(b) <= 2 for b in batches)


def test_shards_partition_and_gather_equals_one_job(model, images: Path, tmp_path: Path) -> None:
    all_names = set_image_names(images)
    assert all_names == sorted(p.name for p in images.iterdir())
    parts = [shard_names(all_names, i, 4) for i in range(4)]
    assert sum(parts, []) == all_names and all(parts)
    names = all_names[:3]
    det = detector(model)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"shard-{i}-of-3.json")
        paths[-1].write_text(json.dumps(detect_images(det, images, shard_names(names, i, 3), 1)))
    assert gather_shards(paths, names) == detect_images(det, images, names, 1)
    (tmp_path / "three").mkdir()
    for name in names:
        (tmp_path / "three" / name).write_bytes((images / name).read_bytes())
    summary = run_gather(paths, tmp_path / "three", tmp_path / "all.json", "person")
    assert summary["images"] == len(names)
    with pytest.raises(WorkflowInputError, match="more than one shard"):
        gather_shards(paths + paths[:1], names)
    with pytest.raises(WorkflowInputError, match="1 missing"):
        gather_shards(paths[1:], names)
    with pytest.raises(WorkflowInputError, match="unknown"):
        gather_shards(paths, names[1:])
    with pytest.raises(WorkflowInputError):
        shard_names(names, 4, 4)


def test_vis_frame_list_from_instances(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"file_name": "v2/00001.jpg"},
                                           {"file_name": "v1/00000.jpg"}]}))
    assert set_image_names(path) == ["v1/00000.jpg", "v2/00001.jpg"]
    path.write_text('{"videos": []}')
    with pytest.raises(WorkflowInputError, match="file_name"):
        set_image_names(path)


def test_unreadable_image_is_an_error(model, tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(WorkflowInputError, match="bad.jpg"):
        detect_images(detector(model), tmp_path, ["bad.jpg"], 1)
    with pytest.raises(WorkflowInputError, match="not found"):
        detect_images(detector(model), tmp_path, ["missing.jpg"], 1)


def test_loader_checks_the_cache(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(WorkflowInputError, match="not cached"):
        load_grounding_dino(TINY_MODELS, tmp_path)
    other = json.loads(json.dumps(TINY_MODELS))
    other["grounding_dino"]["overrides"]["num_queries"] = 20
    with pytest.raises(WorkflowInputError, match="rerun the weights rule"):
        load_grounding_dino(other, cache)
    broken = make_cache(tmp_path / "broken")
    with open(broken / GD_WEIGHTS, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(WorkflowInputError, match="checksum"):
        load_grounding_dino(TINY_MODELS, broken)
    shutil.rmtree(broken)


def test_detect_shard_and_gather_scripts(cache: Path, images: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gallery"
    for i in range(2):
        write_image(folder / f"{i}.png", i)
    detection = {"prompts": PROMPTS, "box_threshold": 0.2, "text_threshold": 0.1,
                 "batch_size": 2, "person_label": "person", "image_size": IMAGE_SIZE,
                 "max_image_size": MAX_IMAGE_SIZE}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    shard = tmp_path / "shard-0-of-1.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "detect_shard.py"),
                    "--device", "cpu", "--rule", "detect_shard", "--images-from", str(folder), "--image-root", str(folder),
                    "--models", json.dumps(TINY_MODELS), "--detection", json.dumps(detection),
                    "--cache", str(cache), "--shard", "0", "--shards", "1", "--out", str(shard)],
                   check=True, env=env, capture_output=True)
    out = tmp_path / "all.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gather_detections.py"),
                    "--shards", str(shard), "--images-from", str(folder),
                    "--person-label", "person", "--out", str(out)],
                   check=True, env=env, capture_output=True)
    assert sorted(json.loads(out.read_text())) == ["0.png", "1.png"]

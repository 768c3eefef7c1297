"""SAM segmentation of detection boxes with a tiny randomly initialised SAM, and the
mask <-> polygon conversions on hand-made masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from overlearning.core.errors import WorkflowInputError
from overlearning.detect.segmentation import (
    make_predictor,
    mask_to_polygon,
    polygon_to_mask,
    run_segment,
    segment_boxes,
    segment_detections,
)
from overlearning.models.detectors import load_sam
from tests.detector_fixtures import TINY_MODELS, make_cache, one_torch_thread, write_image

BOXES = [[5.0, 5.0, 40.0, 50.0], [10.0, 20.0, 70.0, 60.0], [0.0, 0.0, 80.0, 64.0]]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def sam(cache: Path):
    return load_sam(TINY_MODELS, cache)


def test_polygon_of_a_rectangle_and_back() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 8:31] = True
    polygon = mask_to_polygon(mask)
    assert sorted(map(tuple, polygon)) == [(8, 5), (8, 19), (30, 5), (30, 19)]
    assert np.array_equal(polygon_to_mask(polygon, mask.shape), mask)


def test_largest_contour_wins() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[2:6, 2:6] = True      # 16 pixels
    mask[10:25, 10:30] = True  # 300 pixels
    assert np.array_equal(polygon_to_mask(mask_to_polygon(mask), mask.shape),
                          np.pad(np.ones((15, 20), bool), ((10, 5), (10, 10))))


@pytest.mark.parametrize("pixels", [[], [(3, 3)], [(3, 3), (3, 4), (3, 5), (3, 6)]])
def test_degenerate_masks_give_empty_polygons(pixels: list[tuple[int, int]]) -> None:
    mask = np.zeros((10, 10), dtype=bool)
    for y, x in pixels:
        mask[y, x] = True
    assert mask_to_polygon(mask) == []
    assert not polygon_to_mask([], (10, 10)).any()


def test_one_image_encode_for_all_boxes_same_masks_as_one_encode_per_box(sam) -> None:
    image = np.random.default_rng(0).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    calls = []
    hook = sam.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        predictor = make_predictor(sam)
        masks = segment_boxes(predictor, image, BOXES, 0.0, "union")
        assert len(calls) == 1
        naive = [segment_boxes(predictor, image, [box], 0.0, "union")[0] for box in BOXES]
        assert len(calls) == 1 + len(BOXES)
    finally:
        hook.remove()
    assert masks.shape == (3, 64, 80) and masks.dtype == bool
    for batched, single in zip(masks, naive, strict=True):
        assert np.mean(batched == single) > 0.999


def test_multimask_modes_and_threshold(sam) -> None:
    import torch

    image = np.random.default_rng(1).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    predictor = make_predictor(sam)
    union = segment_boxes(predictor, image, BOXES[:1], 0.0, "union")
    predictor.set_image(image)
    box = predictor.transform.apply_boxes_torch(torch.tensor(BOXES[:1]), image.shape[:2])
    with torch.no_grad():
        logits, _, _ = predictor.predict_torch(None, None, boxes=box, multimask_output=True,
                                               return_logits=True)
    # The authors' mask: a pixel belongs when any of SAM's three candidates has it.
    assert np.array_equal(union[0], (logits[0] > 0.0).any(0).numpy())
    single = segment_boxes(predictor, image, BOXES[:1], 0.0, "single")
    assert single.shape == (1, 64, 80)
    assert not segment_boxes(predictor, image, BOXES[:1], 1e9, "union").any()
    assert segment_boxes(predictor, image, [], 0.0).shape == (0, 64, 80)
    with pytest.raises(ValueError):
        segment_boxes(predictor, image, BOXES, 0.0, "mean")


def test_segment_detections_keeps_every_field_and_counts(sam, tmp_path: Path) -> None:
    for i in range(2):
        write_image(tmp_path / f"{i}.png", i)
    detections = {
        "0.png": [{"label": "a person", "confidence": 0.9, "box": BOXES[0]},
                  {"label": "a dog", "confidence": 0.5, "box": BOXES[1]}],
        "1.png": [{"label": "a zebra", "confidence": 0.3, "box": BOXES[2]}],
        "missing.png": [],  # never opened: it has no detection
    }
    masks, counts = segment_detections(sam, detections, tmp_path, 0.0)
    assert list(masks) == sorted(detections)
    assert counts["images_segmented"] == 2 and counts["masks"] == 3
    for name, dets in detections.items():
        for d, m in zip(dets, masks[name], strict=True):
            assert {k: m[k] for k in d} == d
            polygon = m["mask_polygon"]
            assert polygon == [] or len(polygon) >= 3
    high, counts = segment_detections(sam, detections, tmp_path, 1e9)
    assert counts["degenerate_masks"] == 3
    assert all(m["mask_polygon"] == [] for ms in high.values() for m in ms)


def test_run_segment_is_deterministic_and_checks_inputs(cache: Path, tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.png", 3)
    det_path = tmp_path / "d.json"
    det_path.write_text(json.dumps({"a.png": [{"label": "a dog", "confidence": 0.4,
                                               "box": BOXES[0]}]}))
    seg = {"mask_threshold": 0.0, "multimask": "union"}
    run_segment(det_path, tmp_path / "img", TINY_MODELS, seg, cache, tmp_path / "m1.json",
                device="cpu")
    run_segment(det_path, tmp_path / "img", TINY_MODELS, seg, cache, tmp_path / "m2.json",
                device="cpu")
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()
    det_path.write_text(json.dumps({"b.png": [{"label": "a dog", "confidence": 0.4,
                                               "box": BOXES[0]}]}))
    with pytest.raises(WorkflowInputError, match="not found"):
        run_segment(det_path, tmp_path / "img", TINY_MODELS, seg, cache, tmp_path / "m3.json",
                    device="cpu")
    assert not (tmp_path / "m3.json").exists()
    det_path.write_text('{"a.png": [{"label": "a dog", "box": [0, 0, 1, 1]}]}')
    with pytest.raises(WorkflowInputError, match="lacks confidence"):
        run_segment(det_path, tmp_path / "img", TINY_MODELS, seg, cache, tmp_path / "m3.json",
                    device="cpu")


def test_loader_refuses_a_cache_built_for_another_sam(cache: Path) -> None:
    other = json.loads(json.dumps(TINY_MODELS))
    other["sam"]["overrides"]["encoder_depth"] = 2
    with pytest.raises(WorkflowInputError, match="rerun the weights rule"):
        load_sam(other, cache)


def test_batched_encoding_gives_the_masks_of_one_image_at_a_time(sam, tmp_path: Path) -> None:
    """Images encoded together (different sizes, each resized and padded as set_image
    does) give the masks of set_image + predict one image at a time; batch 1 is the same
    computation exactly. bf16 on the encoder (a CUDA option, checked here on the CPU)
    keeps >= 98% of mask pixels."""
    sizes = [(64, 80), (96, 72), (72, 96)]
    detections = {}
    for i, size in enumerate(sizes):
        write_image(tmp_path / f"{i}.png", 10 + i, size=size)
        detections[f"{i}.png"] = [{"label": "a dog", "confidence": 0.5, "box": box}
                                  for box in BOXES[:2]]
    calls = []
    hook = sam.image_encoder.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        batched, _ = segment_detections(sam, detections, tmp_path, 0.0, batch_size=3)
    finally:
        hook.remove()
    assert calls == [3]
    one, _ = segment_detections(sam, detections, tmp_path, 0.0, batch_size=1)
    predictor = make_predictor(sam)
    low, _ = segment_detections(sam, detections, tmp_path, 0.0, batch_size=3, precision="bf16")
    agreement = []
    for i, size in enumerate(sizes):
        name = f"{i}.png"
        image = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        reference = segment_boxes(predictor, image, BOXES[:2], 0.0, "union")
        for j, mask in enumerate(reference):
            assert one[name][j]["mask_polygon"] == mask_to_polygon(mask)  # exactly
            got = polygon_to_mask(batched[name][j]["mask_polygon"], size)
            want = polygon_to_mask(one[name][j]["mask_polygon"], size)
            assert np.mean(got == want) > 0.999
            agreement.append(np.mean(polygon_to_mask(low[name][j]["mask_polygon"], size) == want))
    assert min(agreement) >= 0.98


def test_many_boxes_are_decoded_in_chunks_with_the_same_masks(sam, monkeypatch) -> None:
    """More boxes than one SAM call takes: several decoder calls, the masks of one call."""
    import overlearning.detect.segmentation as segmentation

    image = np.random.default_rng(1).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    boxes = [[x, y, x + 30.0, y + 25.0] for x in range(0, 40, 8) for y in range(0, 30, 10)]
    predictor = make_predictor(sam)
    whole = segment_boxes(predictor, image, boxes, 0.0, "union")
    calls = []
    hook = sam.mask_decoder.register_forward_hook(lambda *args: calls.append(1))
    monkeypatch.setattr(segmentation, "BOX_CHUNK", 4)
    try:
        chunked = segment_boxes(predictor, image, boxes, 0.0, "union")
    finally:
        hook.remove()
    assert len(calls) == -(-len(boxes) // 4)
    assert chunked.shape == whole.shape == (len(boxes), 64, 80)
    assert np.mean(chunked == whole) > 0.999

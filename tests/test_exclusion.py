"""Index exclusion on hand-made frames, masks and detections: every category, NMS, the
confidence floor, ties, the Hungarian matching, and every malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import nms as tv_nms

from overlearning.core.errors import WorkflowInputError
from overlearning.core.masks import encode_mask
from overlearning.safeguards.exclusion import (
    CATEGORIES,
    DETECTED,
    MISCLASSIFIED_EXCLUSION,
    MISCLASSIFIED_INCLUSION,
    UNDETECTED,
    ExclusionSettings,
    box_iou,
    category,
    match,
    nms,
    person_exclusion,
    run_person_exclusion,
    run_vis_exclusion,
    vis_exclusion,
)

H, W = 64, 80
PERSON = 26
DOG, CAT = 5, 6
SETTINGS = ExclusionSettings(nms_iou=0.7, min_confidence=None, match_iou=0.5)


def rect_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[y0:y1 + 1, x0:x1 + 1] = 1
    return mask


def rect_polygon(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    # Filled with its boundary pixels, this polygon is exactly rect_mask(x0, y0, x1, y1).
    return [[x0, y0], [x0, y1], [x1, y1], [x1, y0]]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """YouTube-VIS style RLE: counts of alternating 0/1 runs in column-major order."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [H, W], "counts": counts}


def det(label: str, confidence: float, rect: tuple[int, int, int, int],
        polygon: list | None = None) -> dict:
    return {"label": label, "confidence": confidence, "box": [float(v) for v in rect],
            "mask_polygon": rect_polygon(*rect) if polygon is None else polygon}


# Frame vid1/00000.jpg: one object for each outcome; vid1/00001.jpg: a person, no detection;
# vid2/00000.jpg: no objects, detections only.
OBJECTS = [  # (crop name, video, frame, category, rect)
    ("vid1/00000_1.jpg", 1, 0, PERSON, (5, 5, 20, 40)),
    ("vid1/00000_2.jpg", 1, 0, PERSON, (30, 5, 45, 40)),
    ("vid1/00000_3.jpg", 1, 0, DOG, (55, 5, 75, 30)),
    ("vid1/00000_4.jpg", 1, 0, PERSON, (55, 40, 75, 60)),
    ("vid1/00000_5.jpg", 1, 0, CAT, (5, 45, 25, 60)),
    ("vid1/00001_6.jpg", 1, 1, PERSON, (10, 10, 30, 50)),
]
FRAMES = [("vid1/00000.jpg", 1, 0), ("vid1/00001.jpg", 1, 1), ("vid2/00000.jpg", 2, 0)]
DETECTIONS = {
    "vid1/00000.jpg": [
        det("a person", 0.9, (5, 5, 20, 40)),    # object 1: person found
        det("a dog", 0.8, (30, 5, 45, 40)),      # object 2: person called a dog
        det("a person", 0.7, (55, 5, 75, 30)),   # object 3: dog called a person
        det("a cat", 0.6, (5, 45, 25, 60)),      # object 5: cat found as a cat
    ],
    "vid1/00001.jpg": [],
    "vid2/00000.jpg": [det("a person", 0.95, (0, 0, 30, 30))],
}
EXPECTED = {
    DETECTED: ["vid1/00000_1.jpg"],
    UNDETECTED: ["vid1/00000_4.jpg", "vid1/00001_6.jpg"],
    MISCLASSIFIED_EXCLUSION: ["vid1/00000_3.jpg"],
    MISCLASSIFIED_INCLUSION: ["vid1/00000_2.jpg"],
}


def split_files(objects=OBJECTS) -> tuple[dict, dict, dict]:
    """(instances.json, fg_instances.json, fg_instances_cropped.json) of the hand-made split."""
    instances = {"videos": [], "categories": [], "annotations": [], "images": [
        {"id": i + 1, "video_id": v, "frame_id": f, "file_name": n, "width": W, "height": H}
        for i, (n, v, f) in enumerate(FRAMES)]}
    images, annotations = [], []
    for crop_id, (name, video, frame, cat, rect) in enumerate(objects, start=1):
        mask = rect_mask(*rect)
        # Both RLE forms occur in the frame index: compressed for one object, lists otherwise.
        seg = encode_mask(mask) if crop_id == 3 else uncompressed_rle(mask)
        images.append({"id": crop_id, "video_id": video, "frame_id": frame, "file_name": name,
                       "width": W, "height": H})
        annotations.append({"id": crop_id, "object_id": crop_id, "video_id": video,
                            "image_id": crop_id, "category_id": cat, "segmentation": seg})
    frame_index = {"videos": [], "categories": [], "images": images, "annotations": annotations}
    cropped = {"images": [{"id": i["id"], "file_name": i["file_name"]} for i in images]}
    return instances, frame_index, cropped


def run(detections=DETECTIONS, settings=SETTINGS, objects=OBJECTS, masks=None):
    instances, frame_index, cropped = split_files(objects)
    plain = {k: [{f: d[f] for f in ("label", "confidence", "box")} for d in v]
             for k, v in detections.items()}
    return vis_exclusion(frame_index, instances, plain, detections if masks is None else masks,
                         PERSON, settings, crop_names=[i["file_name"] for i in cropped["images"]])


def test_every_category_on_hand_made_frames() -> None:
    result, summary = run()
    assert result == EXPECTED
    assert summary["categories"] == {c: len(EXPECTED[c]) for c in CATEGORIES}
    assert summary["excluded"] == 4  # the first three categories
    assert summary["instances"] == 6 and summary["persons"] == 4 and summary["frames"] == 2
    assert summary["matched"] == 4 and summary["removed_by_nms"] == 0


def test_category_table() -> None:
    assert category(True, True) == DETECTED
    assert category(True, False) == MISCLASSIFIED_INCLUSION
    assert category(False, True) == MISCLASSIFIED_EXCLUSION
    assert category(False, False) is None
    assert category(True, None) == UNDETECTED
    assert category(False, None) is None


def test_nms_matches_torchvision() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(60, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, size=(60, 2))], axis=1)
    scores = rng.permutation(60) / 60.0  # distinct scores
    for threshold in (0.3, 0.5, 0.7):
        expected = tv_nms(torch.tensor(boxes), torch.tensor(scores), threshold).tolist()
        assert nms(boxes, scores, threshold) == expected
    assert np.allclose(box_iou(boxes, boxes[:7]),
                       tv_box_iou(torch.tensor(boxes), torch.tensor(boxes[:7])).numpy())


def test_nms_ties_keep_the_earlier_detection() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], dtype=float)
    assert nms(boxes, np.array([0.5, 0.5, 0.5]), 0.7) == [0, 2]
    assert nms(boxes[[1, 0, 2]], np.array([0.5, 0.5, 0.5]), 0.7) == [0, 2]
    assert nms(boxes, np.array([0.4, 0.5, 0.9]), 0.7) == [2, 1]


def test_nms_decides_which_detection_is_matched() -> None:
    # A person box with a rough mask and a lower-confidence "dog" with the same box and a
    # perfect mask: NMS removes the dog, so the person is found; without NMS the dog
    # (higher mask IoU) would win the matching and the person would leak.
    objects = [("vid1/00000_1.jpg", 1, 0, PERSON, (10, 10, 40, 50))]
    detections = {"vid1/00000.jpg": [
        det("a person", 0.9, (10, 10, 40, 50), rect_polygon(10, 10, 40, 34)),  # IoU 0.61
        det("a dog", 0.5, (10, 10, 40, 50)),
    ], "vid1/00001.jpg": [], "vid2/00000.jpg": []}
    result, summary = run(detections, SETTINGS, objects)
    assert result[DETECTED] == ["vid1/00000_1.jpg"] and summary["removed_by_nms"] == 1
    no_nms = ExclusionSettings(nms_iou=1.0, min_confidence=None, match_iou=0.5)
    result, summary = run(detections, no_nms, objects)
    assert result[MISCLASSIFIED_INCLUSION] == ["vid1/00000_1.jpg"]
    assert summary["removed_by_nms"] == 0


def test_confidence_floor() -> None:
    floor = ExclusionSettings(nms_iou=0.7, min_confidence=0.75, match_iou=0.5)
    result, summary = run(settings=floor)
    # The "dog" (0.8) survives; the wrong "person" (0.7) and the cat (0.6) are dropped.
    assert result[DETECTED] == ["vid1/00000_1.jpg"]
    assert result[MISCLASSIFIED_INCLUSION] == ["vid1/00000_2.jpg"]
    assert result[MISCLASSIFIED_EXCLUSION] == []
    # Frames without objects are never examined: vid2's 0.95 detection is not counted.
    assert summary["below_min_confidence"] == 2
    floor_all = ExclusionSettings(nms_iou=0.7, min_confidence=0.95, match_iou=0.5)
    result, _ = run(settings=floor_all)
    assert result[UNDETECTED] == ["vid1/00000_1.jpg", "vid1/00000_2.jpg", "vid1/00000_4.jpg",
                                  "vid1/00001_6.jpg"]


def test_match_pairs_below_threshold_cannot_steal() -> None:
    iou = np.array([[0.6, 0.45], [0.45, 0.0]])
    # The plain Hungarian on IoU (the authors' code) pairs 0-1 and 1-0 (sum 0.9), both below
    # 0.5, and would leave both unmatched; only valid pairs count here.
    assert match(iou, 0.5) == {0: 0}
    assert match(np.array([[0.4]]), 0.5) == {}
    assert match(np.array([[0.5]]), 0.5) == {0: 0}  # IoU >= threshold is a match


def test_authors_matching_lets_a_sub_threshold_pair_steal() -> None:
    iou = np.array([[0.6, 0.45], [0.45, 0.0]])
    assert match(iou, 0.5, "authors") == {}
    assert match(iou, 0.5, "thresholded") == {0: 0}
    assert match(np.array([[0.9, 0.8], [0.85, 0.0]]), 0.5, "authors") == {0: 1, 1: 0}
    assert match(np.zeros((2, 0)), 0.5, "authors") == {}
    with pytest.raises(WorkflowInputError, match="exclusion.matching"):
        ExclusionSettings(matching="hungarian")


# One frame where the rules disagree. Object a (cols 0-59, rows 0-9) overlaps detection X
# (cols 0-35) with IoU 0.6 and Y (cols 33-59) with 0.45; cat b (cols 0-17, rows 0-19)
# overlaps X with 1/3 and Y not at all. Over all pairs a-Y + b-X (0.78) beats a-X (0.6),
# and both of those pairs fall below 0.5: the authors' rule leaves a unmatched.
STEAL_DETECTIONS = {"vid1/00000.jpg": [det("X_LABEL", 0.9, (0, 0, 35, 9)),
                                       det("a person", 0.8, (33, 0, 59, 9))]}


@pytest.mark.parametrize("a_category, x_label, thresholded, authors", [
    # A person called a dog: thresholded leaks it (inclusion); authors: undetected, excluded.
    (PERSON, "a dog", MISCLASSIFIED_INCLUSION, UNDETECTED),
    # A dog called a person: thresholded excludes it; authors leave it unmatched, indexed.
    (DOG, "a person", MISCLASSIFIED_EXCLUSION, None),
])
def test_matching_rules_on_a_frame_and_the_counted_difference(a_category, x_label, thresholded,
                                                              authors) -> None:
    objects = [("vid1/00000_1.jpg", 1, 0, a_category, (0, 0, 59, 9)),
               ("vid1/00000_2.jpg", 1, 0, CAT, (0, 0, 17, 19))]
    detections = {k: [dict(d, label=x_label if d["label"] == "X_LABEL" else d["label"])
                      for d in v] for k, v in STEAL_DETECTIONS.items()}
    expected = {"thresholded": thresholded, "authors": authors}
    for rule in ("thresholded", "authors"):
        settings = ExclusionSettings(nms_iou=0.7, min_confidence=None, match_iou=0.5,
                                     matching=rule)
        result, summary = run(detections, settings, objects)
        found = [c for c in CATEGORIES if "vid1/00000_1.jpg" in result[c]]
        assert found == ([expected[rule]] if expected[rule] else [])
        assert summary["matched"] == (1 if rule == "thresholded" else 0)
        assert summary["matching"] == rule
        # The counters do not depend on the chosen rule.
        assert summary["excluded_only_by_authors"] == int(authors is not None and a_category == PERSON)
        assert summary["excluded_only_by_thresholded"] == int(a_category != PERSON)


def test_matching_rules_agree_on_the_hand_made_frames() -> None:
    authors = ExclusionSettings(nms_iou=0.7, min_confidence=None, match_iou=0.5,
                                matching="authors")
    result, summary = run(settings=authors)
    assert result == EXPECTED
    assert summary["excluded_only_by_authors"] == summary["excluded_only_by_thresholded"] == 0


def test_match_maximises_total_iou_and_breaks_ties_by_confidence() -> None:
    assert match(np.array([[0.9, 0.8], [0.85, 0.0]]), 0.5) == {0: 1, 1: 0}
    # Equal IoU with two detections: the earlier (higher confidence) one wins.
    assert match(np.array([[0.7, 0.7]]), 0.5) == {0: 0}
    assert match(np.array([[0.7, 0.7], [0.7, 0.7]]), 0.5) == {0: 0, 1: 1}


def test_tie_in_matching_on_frames() -> None:
    # Two detections with identical masks and confidences but boxes too different for NMS:
    # the first listed wins (its label decides the category).
    objects = [("vid1/00000_1.jpg", 1, 0, PERSON, (10, 10, 40, 50))]
    for first, expected in (("a person", DETECTED), ("a dog", MISCLASSIFIED_INCLUSION)):
        other = "a dog" if first == "a person" else "a person"
        detections = {"vid1/00000.jpg": [
            det(first, 0.8, (0, 0, 20, 20), rect_polygon(10, 10, 40, 50)),
            det(other, 0.8, (40, 40, 79, 63), rect_polygon(10, 10, 40, 50)),
        ]}
        result, _ = run(detections, SETTINGS, objects)
        assert result[expected] == ["vid1/00000_1.jpg"]


def test_degenerate_and_empty_polygons_are_counted_never_matched() -> None:
    detections = json.loads(json.dumps(DETECTIONS))
    detections["vid1/00000.jpg"][0]["mask_polygon"] = [[5, 5], [20, 40]]  # 2 points
    detections["vid1/00000.jpg"][1]["mask_polygon"] = []
    result, summary = run(detections)
    assert summary["degenerate_polygons"] == 1 and summary["empty_polygons"] == 1
    assert sorted(result[UNDETECTED]) == ["vid1/00000_1.jpg", "vid1/00000_2.jpg",
                                          "vid1/00000_4.jpg", "vid1/00001_6.jpg"]


def test_detection_for_an_unknown_image_is_an_error() -> None:
    detections = {**DETECTIONS, "vid9/00000.jpg": []}
    with pytest.raises(WorkflowInputError, match="not frames of the split"):
        run(detections)


def test_frame_with_objects_but_no_detection_entry_is_an_error() -> None:
    detections = {k: v for k, v in DETECTIONS.items() if k != "vid1/00001.jpg"}
    with pytest.raises(WorkflowInputError, match="no detection entry"):
        run(detections)


def test_masks_must_describe_the_detections() -> None:
    masks = {k: v[:-1] if v else v for k, v in DETECTIONS.items()}
    with pytest.raises(WorkflowInputError, match="mask"):
        run(masks=masks)
    moved = json.loads(json.dumps(DETECTIONS))
    moved["vid1/00000.jpg"][0]["box"][0] += 1
    with pytest.raises(WorkflowInputError, match="does not belong"):
        run(masks=moved)


def test_crop_names_must_be_the_indexed_ones() -> None:
    instances, frame_index, _ = split_files()
    with pytest.raises(WorkflowInputError, match="differ from the cropped index"):
        vis_exclusion(frame_index, instances, DETECTIONS, DETECTIONS, PERSON, SETTINGS,
                      crop_names=["vid1/00000_1.jpg"])


def write_split(tmp: Path) -> dict[str, Path]:
    instances, frame_index, cropped = split_files()
    plain = {k: [{f: d[f] for f in ("label", "confidence", "box")} for d in v]
             for k, v in DETECTIONS.items()}
    files = {"instances": instances, "frame_index": frame_index, "cropped": cropped,
             "detections": plain, "masks": DETECTIONS}
    paths = {}
    for key, data in files.items():
        paths[key] = tmp / f"{key}.json"
        paths[key].write_text(json.dumps(data))
    return paths


def test_run_writes_exclusion_and_summary_deterministically(tmp_path: Path) -> None:
    p = write_split(tmp_path)
    outs = []
    for i in range(2):
        out, summary = tmp_path / f"ex{i}.json", tmp_path / f"ex{i}.summary.json"
        run_vis_exclusion(p["frame_index"], p["cropped"], p["instances"], p["detections"],
                          p["masks"], PERSON, SETTINGS, out, summary)
        outs.append((out.read_bytes(), summary.read_bytes()))
    assert outs[0] == outs[1]
    written = json.loads(outs[0][0])
    assert written == EXPECTED
    indexed = {i["file_name"] for i in json.loads(p["cropped"].read_text())["images"]}
    assert set().union(*written.values()) <= indexed
    assert json.loads(outs[0][1])["categories"][DETECTED] == 1


@pytest.mark.parametrize("content, message", [
    ("{not json", "not readable as JSON"),
    ('[{"label": "a person"}]', "must be an object"),
    ('{"vid1/00000.jpg": {"label": "x"}}', "must be a list"),
    ('{"vid1/00000.jpg": [{"label": "a", "confidence": 0.5}]}', "lacks box"),
    ('{"vid1/00000.jpg": [{"label": "a", "confidence": 1.5, "box": [0, 0, 1, 1]}]}',
     "confidence"),
    ('{"vid1/00000.jpg": [{"label": "a", "confidence": 0.5, "box": [0, 0, 1]}]}', "box"),
    ('{"vid1/00000.jpg": [{"label": "a", "confidence": 0.5, "box": [5, 0, 1, 1]}]}',
     "x2 < x1"),
    ('{"vid1/00000.jpg": [{"label": 3, "confidence": 0.5, "box": [0, 0, 1, 1]}]}', "label"),
])
def test_malformed_detection_json_is_an_error(tmp_path: Path, content: str, message: str) -> None:
    p = write_split(tmp_path)
    p["detections"].write_text(content)
    with pytest.raises(WorkflowInputError, match=message):
        run_vis_exclusion(p["frame_index"], p["cropped"], p["instances"], p["detections"],
                          p["masks"], PERSON, SETTINGS, tmp_path / "o.json", tmp_path / "s.json")
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("polygon, message", [
    ([[1, 2, 3]], "not \\[x, y\\]"),
    ("oops", "list of \\[x, y\\]"),
    ([[1, "a"]], "not \\[x, y\\]"),
])
def test_malformed_mask_json_is_an_error(tmp_path: Path, polygon, message: str) -> None:
    p = write_split(tmp_path)
    masks = json.loads(p["masks"].read_text())
    masks["vid1/00000.jpg"][0]["mask_polygon"] = polygon
    p["masks"].write_text(json.dumps(masks))
    with pytest.raises(WorkflowInputError, match=message):
        run_vis_exclusion(p["frame_index"], p["cropped"], p["instances"], p["detections"],
                          p["masks"], PERSON, SETTINGS, tmp_path / "o.json", tmp_path / "s.json")


def test_empty_ground_truth_or_gallery_is_an_error(tmp_path: Path) -> None:
    instances, frame_index, _ = split_files()
    frame_index["annotations"] = []
    with pytest.raises(WorkflowInputError, match="no objects"):
        vis_exclusion(frame_index, instances, DETECTIONS, DETECTIONS, PERSON, SETTINGS)
    with pytest.raises(WorkflowInputError, match="no gallery images"):
        person_exclusion(tmp_path, [], {}, {}, SETTINGS)


def test_mask_size_differing_from_frame_is_an_error() -> None:
    instances, frame_index, cropped = split_files()
    frame_index["annotations"][0]["segmentation"] = {"size": [10, 10], "counts": [100]}
    with pytest.raises(WorkflowInputError, match="differs from the frame"):
        vis_exclusion(frame_index, instances, DETECTIONS, DETECTIONS, PERSON, SETTINGS)


# Person galleries (detection-only mode): every image is one person.

def gallery(tmp: Path) -> tuple[Path, Path, list[str]]:
    images, masks = tmp / "gallery", tmp / "bounding_box_test_seg"
    images.mkdir()
    masks.mkdir()
    names = ["0001_c1_a.jpg", "0001_c2_b.jpg", "0002_c1_c.jpg", "0002_c2_d.jpg", "0003_c1_e.jpg"]
    for name in names:
        Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(images / name)
        Image.fromarray(rect_mask(20, 5, 60, 60) * 255).save(masks / f"{Path(name).stem}.png")
    return images, masks, names


PERSON_DETECTIONS = {
    "0001_c1_a.jpg": [det("a person", 0.8, (20, 5, 60, 60))],                    # found
    "0001_c2_b.jpg": [det("a person", 0.9, (0, 0, 15, 15)),                       # a corner
                      det("a dog", 0.4, (20, 5, 60, 58))],                        # the person
    "0002_c1_c.jpg": [],                                                          # nothing
    "0002_c2_d.jpg": [det("a person", 0.9, (0, 0, 10, 10))],                      # off the mask
    "0003_c1_e.jpg": [det("a dog", 0.5, (20, 5, 60, 60)),                         # equal IoU:
                      det("a person", 0.5, (20, 5, 60, 60.5))],                   # NMS keeps dog
}


def test_person_gallery_categories_with_mgcam_masks(tmp_path: Path) -> None:
    images, masks, names = gallery(tmp_path)
    result, summary = person_exclusion(images, names, PERSON_DETECTIONS, PERSON_DETECTIONS,
                                       SETTINGS, gt_mask_dir=masks)
    assert result == {
        DETECTED: ["0001_c1_a.jpg"],
        UNDETECTED: ["0002_c1_c.jpg", "0002_c2_d.jpg"],
        MISCLASSIFIED_EXCLUSION: [],
        MISCLASSIFIED_INCLUSION: ["0001_c2_b.jpg", "0003_c1_e.jpg"],
    }
    assert summary["no_detection"] == 1 and summary["no_overlapping_detection"] == 1
    assert summary["removed_by_nms"] == 1
    assert summary["gt_mask"] == "mgcam" and summary["excluded"] == 3


def test_person_gallery_whole_image_mask(tmp_path: Path) -> None:
    images, _, names = gallery(tmp_path)
    result, summary = person_exclusion(images, names, PERSON_DETECTIONS, PERSON_DETECTIONS,
                                       SETTINGS)
    # Against the whole image every detection overlaps: the small "person" in the corner of
    # 0002_c2_d.jpg now counts as a detection of the person.
    assert result[DETECTED] == ["0001_c1_a.jpg", "0002_c2_d.jpg"]
    assert result[UNDETECTED] == ["0002_c1_c.jpg"]
    assert summary["gt_mask"] == "whole_image"


def test_person_gallery_errors(tmp_path: Path) -> None:
    images, masks, names = gallery(tmp_path)
    with pytest.raises(WorkflowInputError, match="not images of"):
        person_exclusion(images, names, {**PERSON_DETECTIONS, "x.jpg": []},
                         {**PERSON_DETECTIONS, "x.jpg": []}, SETTINGS)
    missing = {k: v for k, v in PERSON_DETECTIONS.items() if k != names[0]}
    with pytest.raises(WorkflowInputError, match="no detection entry"):
        person_exclusion(images, names, missing, missing, SETTINGS)
    (masks / "0003_c1_e.png").unlink()
    with pytest.raises(WorkflowInputError, match="no MGCAM mask"):
        person_exclusion(images, names, PERSON_DETECTIONS, PERSON_DETECTIONS, SETTINGS,
                         gt_mask_dir=masks)
    Image.fromarray(np.ones((10, 10), dtype=np.uint8)).save(masks / "0003_c1_e.png")
    with pytest.raises(WorkflowInputError, match="mask is 10x10"):
        person_exclusion(images, names, PERSON_DETECTIONS, PERSON_DETECTIONS, SETTINGS,
                         gt_mask_dir=masks)


def test_person_run_writes_files(tmp_path: Path) -> None:
    images, masks, _ = gallery(tmp_path)
    (tmp_path / "d.json").write_text(json.dumps(PERSON_DETECTIONS))
    out, summary = tmp_path / "ex.json", tmp_path / "ex.summary.json"
    run_person_exclusion(images, tmp_path / "d.json", tmp_path / "d.json", SETTINGS, out,
                         summary, gt_mask_dir=masks)
    written = json.loads(out.read_text())
    assert list(written) == sorted(CATEGORIES)
    assert set().union(*written.values()) <= {p.name for p in images.iterdir()}

"""bench/bench_prepare.py: the authors' algorithm it times, and how it estimates their
as-written (cubic) look-ups where they are not run in full."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_prepare  # noqa: E402


class CountingList(list):
    """A list that counts the items its iterators hand out."""

    steps = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for item in super().__iter__():
            CountingList.steps += 1
            yield item


def test_the_step_count_is_the_annotation_scans_of_the_as_written_look_ups() -> None:
    # 5 frames, 3 annotations each, ids in a shuffled order so positions are not ids.
    images = [{"id": i, "width": 10 + i, "height": 20 + i} for i in (4, 1, 5, 3, 2)]
    annotations = [{"id": 100 + k, "image_id": images[k % 5]["id"], "segmentation": k}
                   for k in (7, 0, 12, 3, 9, 14, 1, 5, 11, 2, 8, 13, 4, 6, 10)]
    part = {"images": images, "annotations": CountingList(annotations)}
    crops = [annotations[k] for k in (0, 4, 14, 9)]
    predicted = bench_prepare._as_written_steps(crops, part)
    for crop, expected in zip(crops, predicted, strict=True):
        CountingList.steps = 0
        width, height, segmentation, _ = bench_prepare._frame_entry_as_written({}, crop, part)
        image = next(i for i in images if i["id"] == crop["image_id"])
        assert (width, height, segmentation) == (image["width"], image["height"],
                                                 crop["segmentation"])
        assert CountingList.steps == expected
    # Counted by hand for the first crop: annotation position 0, its frame at position 2
    # (id 5): 3 image steps x 1 annotation step, twice, + 1 for the segmentation.
    assert predicted[0] == 2 * 3 * 1 + 1


def test_a_small_run_writes_the_same_crops_as_the_authors_algorithm(tmp_path: Path) -> None:
    result = bench_prepare.run([10, 12], frames=3, objects=2, size=(16, 24), threads=1,
                               seed=5, workdir=tmp_path, samples=3, check_videos=10)
    for row in result["sizes"]:
        assert row["annotations"] == row["videos"] * 3 * 2
        assert row["same_crop_names"] and row["same_crop_bytes"]
        assert row["same_cropped_index"] and row["same_frame_index"]
        assert row["authors_as_written_index_steps"] > 0
    check = result["as_written_in_full_check"]
    assert check["videos"] == 10
    assert check["same_crop_bytes"] and check["same_frame_index"]
    assert check["measured_cpu_s"] > 0 and check["ours_cpu_s"] > 0
    assert list(tmp_path.iterdir()) == []

"""VIS preparation (frame-level JSON, split, crops): ours against a straightforward quadratic one.

Ours writes each split's crops into one pack (foregroundImages_cropped.zip), the naive one
one JPEG per crop as the study did; the report checks both the names and the bytes of
every crop, member against file.

The naive version is written here for the comparison, the way the study's setup script
works: it finds each annotation's frame by scanning the image list, decodes the frame once
per annotation, crops on one thread, and builds the frame-level crop index with a scan of
the annotations and of the images per crop. Ours indexes by id once, decodes each frame
once and crops frames in a thread pool. Both run on the same generated YouTube-VIS-like
input (video-level JSON with uncompressed RLE, JPEG frames) at two sizes; the report gives
the times, their ratio, and the scaling exponent log(t_large / t_small) / log(n_large /
n_small) (1 = linear, 2 = quadratic). Both must write the same crop names and indexes.

    python bench/bench_prepare.py --out DIR   ->   DIR/prepare.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from itertools import chain, groupby
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import write_result  # noqa: E402

from overlearning.core.image_io import read_rgb, write_image  # noqa: E402
from overlearning.core.masks import encode_mask  # noqa: E402
from overlearning.core.packs import open_pack  # noqa: E402
from overlearning.data.crops import (  # noqa: E402
    CROP_PACK,
    crop_file_name,
    foreground_crop,
    make_crops,
)
from overlearning.data.vis_frames import convert_video_annotations  # noqa: E402
from overlearning.data.vis_split import SPLITS, split_frames_file  # noqa: E402


def _rle(mask: np.ndarray) -> dict:
    flat = mask.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def generate(root: Path, videos: int, frames: int, objects: int, size: tuple[int, int],
             seed: int) -> Path:
    """YouTube-VIS-like input: ``root/JPEGImages/<video>/<frame>.jpg`` + ``instances.json``."""
    rng = np.random.default_rng(seed)
    height, width = size
    video_list, annotations = [], []
    for v in range(1, videos + 1):
        names = [f"v{v:05d}/{f:05d}.jpg" for f in range(frames)]
        video_list.append({"id": v, "width": width, "height": height, "length": frames,
                           "file_names": names})
        for name in names:
            path = root / "JPEGImages" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
        for o in range(objects):
            segs, boxes, areas = [], [], []
            for _ in range(frames):
                w, h = int(rng.integers(4, width // 2)), int(rng.integers(4, height // 2))
                x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
                mask = np.zeros((height, width), np.uint8)
                mask[y:y + h, x:x + w] = 1
                segs.append(_rle(mask))
                boxes.append([float(x), float(y), float(w), float(h)])
                areas.append(w * h)
            annotations.append({"id": len(annotations) + 1, "video_id": v,
                                "category_id": 1 + o % 2, "iscrowd": 0,
                                "segmentations": segs, "bboxes": boxes, "areas": areas})
    data = {"videos": video_list, "annotations": annotations,
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "person"}]}
    (root / "instances.json").write_text(json.dumps(data))
    return root / "instances.json"


def ours(source: Path, images: Path, out: Path, threads: int) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    convert_video_annotations(source, out / "frames.json", out / "objects.json")
    split_frames_file(out / "frames.json", {s: out / s / "instances.json" for s in SPLITS},
                      (0.8, 0.9), 123)
    times["frames_and_split_s"] = time.perf_counter() - start
    start = time.perf_counter()
    for split in SPLITS:
        make_crops(out / split / "instances.json", images, out / split, threads=threads)
    times["crops_s"] = time.perf_counter() - start
    return times


def naive(source: Path, images: Path, out: Path) -> dict[str, float]:
    """Quadratic look-ups, one decode per annotation, one thread."""
    times = {}
    start = time.perf_counter()
    video_json = json.loads(source.read_text())
    counter = iter(range(1, 1 << 62))
    image_list = [{"id": next(counter), "video_id": v["id"], "frame_id": f,
                   "width": v["width"], "height": v["height"], "file_name": name}
                  for v in video_json["videos"] for f, name in enumerate(v["file_names"])]
    annotation_list = []
    for object_id, obj in enumerate(video_json["annotations"], start=1):
        for f, seg in enumerate(obj["segmentations"]):
            if seg is None:
                continue
            image = next(filter(lambda i, v=obj["video_id"], f=f:
                                i["video_id"] == v and i["frame_id"] == f, image_list))
            annotation_list.append({"id": len(annotation_list) + 1, "object_id": object_id,
                                    "video_id": obj["video_id"], "image_id": image["id"],
                                    "category_id": obj["category_id"], "segmentation": seg,
                                    "area": obj["areas"][f], "bbox": obj["bboxes"][f],
                                    "iscrowd": obj["iscrowd"]})
    random.seed(123)
    grouped_images = [list(g) for _, g in groupby(image_list, key=lambda i: i["video_id"])]
    grouped_annotations = [list(g) for _, g in groupby(annotation_list, key=lambda a: a["video_id"])]
    pairs = list(zip(grouped_images, grouped_annotations, strict=False))
    random.shuffle(pairs)
    n = len(pairs)
    cuts = {"train": (0, int(0.8 * n)), "valid": (int(0.8 * n), int(0.9 * n)),
            "test": (int(0.9 * n), n)}
    parts = {s: {"images": list(chain.from_iterable(p[0] for p in pairs[a:b])),
                 "annotations": list(chain.from_iterable(p[1] for p in pairs[a:b]))}
             for s, (a, b) in cuts.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "frames.json").write_text(json.dumps({"images": image_list, "annotations": annotation_list}))
    for split, part in parts.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / split / "instances.json").write_text(json.dumps(part))
    times["frames_and_split_s"] = time.perf_counter() - start

    start = time.perf_counter()
    for split, part in parts.items():
        crop_root = out / split / "foregroundImages_cropped"
        crop_images, crop_annotations = [], []
        for position, annotation in enumerate(part["annotations"], start=1):
            image = next(i for i in part["images"] if i["id"] == annotation["image_id"])
            pixels = read_rgb(images / image["file_name"])
            mask = coco_mask.decode(coco_mask.frPyObjects(annotation["segmentation"],
                                                          image["height"], image["width"]))
            window = tuple(int(v) for v in annotation["bbox"])
            crop, crop_mask = foreground_crop(pixels, mask, window)
            name = crop_file_name(image["file_name"], annotation["object_id"], "jpg")
            (crop_root / name).parent.mkdir(parents=True, exist_ok=True)
            write_image(crop_root / name, crop)
            crop_images.append({"id": position, "file_name": name})
            crop_annotations.append({"id": annotation["id"], "image_id": position,
                                     "segmentation": encode_mask(crop_mask)})
        (out / split / "fg_instances_cropped.json").write_text(
            json.dumps({"images": crop_images, "annotations": crop_annotations}))
        frame_images, frame_annotations = [], []
        for crop_image, crop_annotation in zip(crop_images, crop_annotations, strict=True):
            source_annotation = next(a for a in part["annotations"] if a["id"] == crop_annotation["id"])
            frame = next(i for i in part["images"] if i["id"] == source_annotation["image_id"])
            frame_images.append({**crop_image, "width": frame["width"], "height": frame["height"]})
            frame_annotations.append({**source_annotation, "image_id": crop_image["id"]})
        (out / split / "fg_instances.json").write_text(
            json.dumps({"images": frame_images, "annotations": frame_annotations}))
    times["crops_s"] = time.perf_counter() - start
    return times


def _names(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


def _same_crops(ours_split: Path, naive_split: Path) -> tuple[bool, bool]:
    """(same crop names, same bytes member for member): our pack against the naive files."""
    pack = open_pack(ours_split / CROP_PACK)
    folder = naive_split / "foregroundImages_cropped"
    names = _names(folder)
    if pack.names() != names:
        return False, False
    return True, all(pack.read_bytes(n) == (folder / n).read_bytes() for n in names)


def run(sizes: list[int], frames: int, objects: int, size: tuple[int, int], threads: int,
        seed: int, workdir: Path | None) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-", dir=workdir) as tmp:
        for videos in sizes:
            root = Path(tmp) / f"n{videos}"
            source = generate(root / "raw", videos, frames, objects, size, seed)
            images = root / "raw/JPEGImages"
            # CPU seconds too (every thread of this process): on a machine shared with
            # other work, wall times stretch with the load, CPU seconds much less.
            cpu = time.process_time()
            t_ours = ours(source, images, root / "ours", threads)
            cpu_ours, cpu = time.process_time() - cpu, time.process_time()
            t_naive = naive(source, images, root / "naive")
            cpu_naive = time.process_time() - cpu
            checks = [_same_crops(root / "ours" / s, root / "naive" / s) for s in SPLITS]
            same = all(names for names, _ in checks)
            same_bytes = all(data for _, data in checks)
            row = {"videos": videos, "frames": videos * frames,
                   "annotations": videos * frames * objects,
                   "ours": {k: round(v, 3) for k, v in t_ours.items()},
                   "naive": {k: round(v, 3) for k, v in t_naive.items()},
                   "ours_total_s": round(sum(t_ours.values()), 3),
                   "naive_total_s": round(sum(t_naive.values()), 3),
                   "ours_cpu_s": round(cpu_ours, 3), "naive_cpu_s": round(cpu_naive, 3),
                   "same_crop_names": same, "same_crop_bytes": same_bytes}
            row["ratio_naive_over_ours"] = round(row["naive_total_s"] / row["ours_total_s"], 2)
            row["cpu_ratio_naive_over_ours"] = round(cpu_naive / cpu_ours, 2)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            shutil.rmtree(root)
    small, large = rows[0], rows[-1]
    growth = math.log(large["videos"] / small["videos"])

    def exponent(key: str, stage: str | None = None) -> float:
        a = small[key] if stage is None else small[key][stage]
        b = large[key] if stage is None else large[key][stage]
        return round(math.log(b / a) / growth, 2)

    return {
        "benchmark": "VIS preparation: frame-level JSON + split + crops",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "threads": threads,
        "frames_per_video": frames, "objects_per_video": objects, "frame_size": list(size),
        "seed": seed, "workdir": str(workdir or tempfile.gettempdir()),
        "sizes": rows,
        "scaling_exponent": {
            "ours_total": exponent("ours_total_s"),
            "naive_total": exponent("naive_total_s"),
            "ours_frames_and_split": exponent("ours", "frames_and_split_s"),
            "naive_frames_and_split": exponent("naive", "frames_and_split_s"),
            "ours_crops": exponent("ours", "crops_s"),
            "naive_crops": exponent("naive", "crops_s"),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400],
                        help="numbers of videos (first and last give the scaling)")
    parser.add_argument("--frames", type=int, default=20,
                        help="frames per video (YouTube-VIS 2021 averages about 27)")
    parser.add_argument("--objects", type=int, default=2, help="objects per video")
    parser.add_argument("--frame-size", type=int, nargs=2, default=[32, 48])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=123)
    # Both versions create the same files; on a slow shared disk file creation dominates
    # and hides the algorithms, so the default works in memory where there is a tmpfs.
    parser.add_argument("--workdir", type=Path,
                        default=Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None,
                        help="where the generated input and outputs go (default /dev/shm)")
    args = parser.parse_args()
    result = run(args.sizes, args.frames, args.objects, tuple(args.frame_size), args.threads,
                 args.seed, args.workdir)
    write_result(args.out, "prepare", result)
    for row in result["sizes"]:
        print(f"{row['videos']} videos ({row['annotations']} annotations): ours "
              f"{row['ours_total_s']} s, naive {row['naive_total_s']} s, ratio "
              f"{row['ratio_naive_over_ours']}x (CPU seconds {row['ours_cpu_s']} vs "
              f"{row['naive_cpu_s']}: {row['cpu_ratio_naive_over_ours']}x), "
              f"same crop names: {row['same_crop_names']}, "
              f"bytes: {row['same_crop_bytes']}")
    exp = result["scaling_exponent"]
    print(f"scaling exponent (1 = linear, 2 = quadratic): ours {exp['ours_total']}, "
          f"naive {exp['naive_total']} (frames+split: ours {exp['ours_frames_and_split']}, "
          f"naive {exp['naive_frames_and_split']})")


if __name__ == "__main__":
    main()

"""VIS preparation (frame-level JSON, split, crops): ours against the authors' algorithm.

The baseline is the study's setup_dataset.py for YouTube-VIS, re-derived here from its
behaviour (see ``authors``): the same steps (to_coco_img, remove_empty_annotations, split,
setup_foreground_data with crop_bbx), the same library calls (PIL + torchvision ToTensor /
crop / save_image, pycocotools frPyObjects + decode, an itertools.groupby RLE) and the
same linear look-ups, writing one JPEG per crop. Ours writes each split's crops into one
pack (foregroundImages_cropped.zip), indexes by id once, decodes each frame once, checks
its input and crops frames in a thread pool.

One step of theirs is not run in full: fg_instances.json's look-ups put a scan of the
annotations inside the condition of a scan of the images, so they cost (image position) x
(annotation position) steps per crop, cubic in the split's size (five to six hours at 400
videos on this project's 2-core machine). The timed baseline does the same look-ups with
that scan evaluated once per image scan (quadratic, fewer steps than theirs): a lower
bound of their time. Their as-written time is estimated by timing the as-written look-ups
on a few crops per split and scaling by the exact step count. ``--in-full`` runs ours and
theirs with every look-up as written, in full, at a size where that takes minutes: a
measured ratio, and how close the estimate comes to their measured time. ``--as-written``
runs them in full at every size.

Both run on the same generated YouTube-VIS-like input (video-level JSON with uncompressed
RLE, JPEG frames) at two sizes; the report gives wall and CPU times, their ratios, and the
scaling exponent log(t_large / t_small) / log(n_large / n_small) (1 = linear, 2 =
quadratic). Both must write the same crop names, the same crop bytes (their save_image and
our encoder both end in PIL's JPEG encoder at quality 75, on the same pixels) and the same
indexes (masks compared decoded: ours are compressed RLE, theirs the list of counts).

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
from itertools import chain, count, groupby
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from torchvision import transforms
from torchvision.transforms.functional import crop as tv_crop
from torchvision.utils import save_image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from results import write_result  # noqa: E402

from overlearning.core.packs import open_pack  # noqa: E402
from overlearning.data.crops import (  # noqa: E402
    CROP_PACK,
    CROPPED_INDEX,
    FRAME_INDEX,
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


def _strip_name(file_name: str, object_id: int) -> str:
    # Their rename: every "img_" removed from the whole path, then "_<object>" before the
    # extension (ours only strips the leaf's prefix; the generated names have none).
    stem, ext = file_name.replace("img_", "").rsplit(".", 1)[0], file_name.rsplit(".", 1)[1]
    return f"{stem}_{object_id}.{ext}"


def _counts_by_groupby(binary: np.ndarray) -> dict:
    # Their crop mask RLE: itertools.groupby over the Fortran-order pixels.
    counts: list[int] = []
    for i, (value, run) in enumerate(groupby(binary.ravel(order="F"))):
        if i == 0 and value == 1:
            counts.append(0)
        counts.append(int(len(list(run))))
    return {"counts": counts, "size": list(binary.shape)}


def _frame_entry_as_written(crop_image: dict, crop_annotation: dict, part: dict) -> tuple:
    """Width, height and source segmentation of one crop, looked up as setup_dataset.py does.

    The inner scan of the annotations sits in the condition of the scan of the images, so
    it runs again for every image passed: (image position) x (annotation position) steps,
    twice, per crop. Used only on sampled crops (see ``_estimate_as_written``).
    """
    wanted = crop_annotation["id"]
    width = next(i["width"] for i in part["images"]
                 if i["id"] == next(a["image_id"] for a in part["annotations"] if a["id"] == wanted))
    height = next(i["height"] for i in part["images"]
                  if i["id"] == next(a["image_id"] for a in part["annotations"] if a["id"] == wanted))
    segmentation = next(a["segmentation"] for a in part["annotations"] if a["id"] == wanted)
    return width, height, segmentation, crop_image


def _frame_entry_hoisted(crop_annotation: dict, part: dict) -> tuple:
    """The same values with the annotation found once per scan: fewer steps than theirs."""
    wanted = crop_annotation["id"]
    image_id = next(a["image_id"] for a in part["annotations"] if a["id"] == wanted)
    width = next(i["width"] for i in part["images"] if i["id"] == image_id)
    image_id = next(a["image_id"] for a in part["annotations"] if a["id"] == wanted)
    height = next(i["height"] for i in part["images"] if i["id"] == image_id)
    segmentation = next(a["segmentation"] for a in part["annotations"] if a["id"] == wanted)
    return width, height, segmentation


def _as_written_steps(crop_annotations: list[dict], part: dict) -> list[int]:
    """Generator steps of the as-written lookups per crop: 2 (p_img + 1)(p_ann + 1) + p_ann + 1."""
    ann_pos = {a["id"]: k for k, a in enumerate(part["annotations"])}
    img_pos = {i["id"]: k for k, i in enumerate(part["images"])}
    steps = []
    for crop in crop_annotations:
        k = ann_pos[crop["id"]]
        p = img_pos[part["annotations"][k]["image_id"]]
        steps.append(2 * (p + 1) * (k + 1) + k + 1)
    return steps


def authors(source: Path, images: Path, out: Path, samples: int,
            as_written: bool = False) -> tuple[dict, dict]:
    """setup_dataset.py's algorithm for YouTube-VIS (to_coco_img, remove_empty_annotations,
    split, setup_foreground_data(crop_bbx=True)), re-derived from its behaviour.

    Same operations, library calls and look-ups: the frame of every annotation found by a
    linear ``filter`` over all images; every JSON written with ``json.dump`` and read back;
    per annotation a scan of the split's images, PIL open + torchvision ``ToTensor`` of the
    whole frame, torchvision ``crop``, pycocotools ``frPyObjects`` + ``decode`` of the
    full-size mask, the product, a groupby RLE of the crop mask and torchvision
    ``save_image`` into one file per crop. One exception, which makes this a lower bound
    of their time: fg_instances.json's look-ups are written by them with the annotation
    scan inside the image scan's condition (cubic: hours at 400 videos), here with it
    evaluated once per scan (quadratic); the as-written cost is estimated from ``samples``
    crops per split, timed as they wrote it, scaled by the exact step count. With
    ``as_written`` every crop's look-ups run as they wrote them (small sizes only: it checks
    the estimate).
    """
    times: dict[str, float] = {}
    estimate = {"seconds": 0.0, "cpu_seconds": 0.0, "sampled_crops": 0, "steps": 0,
                "seconds_sampling": 0.0, "cpu_seconds_sampling": 0.0}
    start = time.perf_counter()
    with open(source) as f:
        video_json = json.load(f)
    image_ids, annotation_ids = count(1), count(1)
    frames = {"images": [{"id": next(image_ids), "video_id": v["id"], "frame_id": f,
                          "width": v["width"], "height": v["height"], "file_name": name}
                         for v in video_json["videos"]
                         for f, name in enumerate(v["file_names"])],
              "categories": video_json["categories"]}
    frames["annotations"] = [
        {"id": next(annotation_ids), "object_id": object_id, "video_id": obj["video_id"],
         "image_id": next(filter(lambda i, v=obj["video_id"], f=f:
                                 i["video_id"] == v and i["frame_id"] == f,
                                 frames["images"]))["id"],
         "category_id": obj["category_id"], "segmentation": seg, "area": obj["areas"][f],
         "bbox": obj["bboxes"][f], "iscrowd": obj["iscrowd"]}
        for object_id, obj in enumerate(video_json["annotations"], start=1)
        for f, seg in enumerate(obj["segmentations"]) if seg is not None]
    out.mkdir(parents=True, exist_ok=True)
    frames_path = out / "img_instances.json"
    with open(frames_path, "w") as f:
        json.dump(frames, f)
    # remove_empty_annotations: read back, drop None masks, write again.
    with open(frames_path) as f:
        data = json.load(f)
    data["annotations"] = [a for a in data["annotations"] if a["segmentation"] is not None]
    with open(frames_path, "w") as f:
        json.dump(data, f)
    # split: read back, pair the i-th run of frames with the i-th run of annotations.
    with open(frames_path) as f:
        data = json.load(f)
    random.seed(123)
    runs = [list(g) for _, g in groupby(data["images"], key=lambda i: i["video_id"])]
    annotation_runs = [list(g) for _, g in groupby(data["annotations"], key=lambda a: a["video_id"])]
    pairs = list(zip(runs, annotation_runs, strict=False))
    random.shuffle(pairs)
    runs, annotation_runs = zip(*pairs, strict=True)
    first, second = int(0.8 * len(runs)), int((0.8 + 0.1) * len(runs))
    for split, (a, b) in zip(SPLITS, [(0, first), (first, second), (second, len(runs))],
                             strict=True):
        (out / split).mkdir(parents=True, exist_ok=True)
        with open(out / split / "instances.json", "w") as f:
            json.dump({"images": list(chain.from_iterable(runs[a:b])),
                       "categories": data["categories"],
                       "annotations": list(chain.from_iterable(annotation_runs[a:b]))}, f)
    times["frames_and_split_s"] = time.perf_counter() - start

    start = time.perf_counter()
    for split in SPLITS:
        with open(out / split / "instances.json") as f:
            part = json.load(f)
        crop_root = out / split / "foregroundImages_cropped"
        crop_root.mkdir(parents=True, exist_ok=True)
        crop_images, crop_annotations = [], []
        for position, annotation in enumerate(part["annotations"], start=1):
            frame = next(i for i in part["images"] if i["id"] == annotation["image_id"])
            frame_tensor = transforms.ToTensor()(Image.open(images / frame["file_name"]))
            x, y, w, h = (int(v) for v in annotation["bbox"])
            cropped = tv_crop(frame_tensor, y, x, h, w)
            segmentation = annotation["segmentation"]
            rle = coco_mask.frPyObjects(segmentation, segmentation["size"][0],
                                        segmentation["size"][1])
            binary = torch.from_numpy(coco_mask.decode(rle))
            binary_cropped = tv_crop(binary, y, x, h, w)
            foreground = torch.mul(cropped, binary_cropped)
            crop_rle = _counts_by_groupby(binary_cropped.detach().numpy().astype("uint8"))
            name = _strip_name(frame["file_name"], annotation["object_id"])
            target = crop_root / name
            if not target.parent.exists():
                target.parent.mkdir(parents=True)
            try:
                save_image(foreground, target)
            except ValueError:
                continue
            crop_images.append({"id": position, "video_id": frame["video_id"],
                                "frame_id": frame["frame_id"], "width": w, "height": h,
                                "file_name": name})
            crop_annotations.append({
                "id": annotation["id"], "object_id": annotation["object_id"],
                "video_id": annotation["video_id"], "image_id": position,
                "category_id": annotation["category_id"], "segmentation": crop_rle,
                "area": annotation["area"],
                "bbox": [0.0, 0.0, annotation["bbox"][2], annotation["bbox"][3]],
                "bbox_prev": annotation["bbox"], "iscrowd": annotation["iscrowd"]})
        with open(out / split / CROPPED_INDEX, "w") as f:
            json.dump({"images": crop_images, "categories": part["categories"],
                       "annotations": crop_annotations}, f)
        frame_images, frame_annotations = [], []
        for crop_image, crop_annotation in zip(crop_images, crop_annotations, strict=True):
            if as_written:
                width, height, segmentation, _ = _frame_entry_as_written(
                    crop_image, crop_annotation, part)
            else:
                width, height, segmentation = _frame_entry_hoisted(crop_annotation, part)
            frame_images.append({"id": crop_image["id"], "video_id": crop_image["video_id"],
                                 "frame_id": crop_image["frame_id"], "width": width,
                                 "height": height, "file_name": crop_image["file_name"]})
            frame_annotations.append({
                "id": crop_annotation["id"], "object_id": crop_annotation["object_id"],
                "video_id": crop_annotation["video_id"], "image_id": crop_annotation["image_id"],
                "category_id": crop_annotation["category_id"], "segmentation": segmentation,
                "area": crop_annotation["area"], "bbox": crop_annotation["bbox_prev"],
                "iscrowd": crop_annotation["iscrowd"]})
        with open(out / split / FRAME_INDEX, "w") as f:
            json.dump({"images": frame_images, "categories": part["categories"],
                       "annotations": frame_annotations}, f)
        if not as_written:
            _estimate_as_written(crop_images, crop_annotations, part, samples, estimate)
    times["crops_s"] = time.perf_counter() - start - estimate["seconds_sampling"]
    return times, estimate


def _estimate_as_written(crop_images: list[dict], crop_annotations: list[dict], part: dict,
                         samples: int, estimate: dict) -> None:
    """Time the as-written fg_instances.json look-ups on evenly spaced crops and add the
    split's whole cost (seconds per step x exact steps), in wall and in CPU seconds."""
    begin, begin_cpu = time.perf_counter(), time.process_time()
    steps = _as_written_steps(crop_annotations, part)
    picks = sorted({round(i * (len(steps) - 1) / max(samples - 1, 1)) for i in range(samples)})
    wall, cpu, sampled_steps = 0.0, 0.0, 0
    for k in picks:
        start, start_cpu = time.perf_counter(), time.process_time()
        _frame_entry_as_written(crop_images[k], crop_annotations[k], part)
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        sampled_steps += steps[k]
    if sampled_steps:
        estimate["seconds"] += wall / sampled_steps * sum(steps)
        estimate["cpu_seconds"] += cpu / sampled_steps * sum(steps)
    estimate["sampled_crops"] += len(picks)
    estimate["steps"] += sum(steps)
    estimate["seconds_sampling"] += time.perf_counter() - begin
    estimate["cpu_seconds_sampling"] += time.process_time() - begin_cpu


def _names(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))


def _mask(segmentation: dict) -> np.ndarray:
    height, width = segmentation["size"]
    if isinstance(segmentation["counts"], list):
        segmentation = coco_mask.frPyObjects(segmentation, height, width)
    else:
        segmentation = {"size": [height, width], "counts": segmentation["counts"].encode()}
    return coco_mask.decode(segmentation)


def _same_index(ours_index: dict, their_index: dict) -> bool:
    """Same image entries and annotation entries; masks compared decoded (ours are
    compressed RLE, theirs the uncompressed list of counts)."""
    if ours_index["images"] != their_index["images"] or \
            len(ours_index["annotations"]) != len(their_index["annotations"]):
        return False
    for ours_entry, their_entry in zip(ours_index["annotations"], their_index["annotations"],
                                       strict=True):
        rest = {k: v for k, v in ours_entry.items() if k != "segmentation"}
        if rest != {k: v for k, v in their_entry.items() if k != "segmentation"}:
            return False
        if not np.array_equal(_mask(ours_entry["segmentation"]),
                              _mask(their_entry["segmentation"])):
            return False
    return True


def _compare(ours_split: Path, their_split: Path) -> dict[str, bool]:
    """Our pack and indexes against their crop files and indexes, for one split."""
    pack = open_pack(ours_split / CROP_PACK)
    folder = their_split / "foregroundImages_cropped"
    names = _names(folder)
    same_names = pack.names() == names
    indexes = {key: _same_index(json.loads((ours_split / name).read_text()),
                                json.loads((their_split / name).read_text()))
               for key, name in (("same_cropped_index", CROPPED_INDEX),
                                 ("same_frame_index", FRAME_INDEX))}
    return {"same_crop_names": same_names,
            "same_crop_bytes": same_names and all(
                pack.read_bytes(n) == (folder / n).read_bytes() for n in names),
            **indexes}


def _check_in_full(tmp: Path, videos: int, frames: int, objects: int, size: tuple[int, int],
                   threads: int, seed: int, samples: int) -> dict:
    """Ours and the authors' algorithm with every look-up as they wrote it, in full, at a
    size where that takes minutes: the measured ratio, and how close the sampled estimate
    of their as-written time (used at the benchmark's sizes) comes to their measured time."""
    root = tmp / f"check{videos}"
    source = generate(root / "raw", videos, frames, objects, size, seed)
    images = root / "raw/JPEGImages"
    cpu = time.process_time()
    t_ours = ours(source, images, root / "ours", threads)
    cpu_ours, cpu = time.process_time() - cpu, time.process_time()
    times, estimate = authors(source, images, root / "sampled", samples)
    cpu_sampled = time.process_time() - cpu - estimate["cpu_seconds_sampling"]
    cpu = time.process_time()
    full_times, _ = authors(source, images, root / "full", samples, as_written=True)
    cpu_full = time.process_time() - cpu
    checks = [_compare(root / "ours" / s, root / "full" / s) for s in SPLITS]
    shutil.rmtree(root)
    check = {"videos": videos, "annotations": videos * frames * objects,
             "ours_s": round(sum(t_ours.values()), 3), "ours_cpu_s": round(cpu_ours, 3),
             "estimated_s": round(sum(times.values()) + estimate["seconds"], 2),
             "measured_s": round(sum(full_times.values()), 2),
             "estimated_cpu_s": round(cpu_sampled + estimate["cpu_seconds"], 2),
             "measured_cpu_s": round(cpu_full, 2),
             **{key: all(c[key] for c in checks) for key in checks[0]}}
    check["estimated_over_measured_cpu"] = round(check["estimated_cpu_s"] / cpu_full, 2)
    check["measured_ratio"] = round(check["measured_s"] / check["ours_s"], 1)
    check["measured_cpu_ratio"] = round(cpu_full / cpu_ours, 1)
    print(json.dumps(check), file=sys.stderr)
    return check


def run(sizes: list[int], frames: int, objects: int, size: tuple[int, int], threads: int,
        seed: int, workdir: Path | None, samples: int, as_written: bool = False,
        check_videos: int = 0) -> dict:
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
            t_theirs, estimate = authors(source, images, root / "authors", samples,
                                          as_written)
            # The sampling of the as-written look-ups is not part of their run.
            cpu_theirs = time.process_time() - cpu - estimate["cpu_seconds_sampling"]
            checks = [_compare(root / "ours" / s, root / "authors" / s) for s in SPLITS]
            row = {"videos": videos, "frames": videos * frames,
                   "annotations": videos * frames * objects,
                   "ours": {k: round(v, 3) for k, v in t_ours.items()},
                   "authors": {k: round(v, 3) for k, v in t_theirs.items()},
                   "ours_total_s": round(sum(t_ours.values()), 3),
                   "authors_total_s": round(sum(t_theirs.values()), 3),
                   "ours_cpu_s": round(cpu_ours, 3), "authors_cpu_s": round(cpu_theirs, 3),
                   "authors_as_written_estimate_s": round(
                       sum(t_theirs.values()) + estimate["seconds"], 1),
                   "authors_as_written_estimate_cpu_s": round(
                       cpu_theirs + estimate["cpu_seconds"], 1),
                   "authors_as_written_sampled_crops": estimate["sampled_crops"],
                   "authors_as_written_index_steps": estimate["steps"],
                   **{key: all(c[key] for c in checks) for key in checks[0]}}
            row["ratio_authors_over_ours"] = round(row["authors_total_s"] / row["ours_total_s"], 1)
            row["cpu_ratio_authors_over_ours"] = round(cpu_theirs / cpu_ours, 1)
            row["as_written_ratio_estimate"] = round(
                row["authors_as_written_estimate_s"] / row["ours_total_s"])
            row["as_written_cpu_ratio_estimate"] = round(
                row["authors_as_written_estimate_cpu_s"] / cpu_ours)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            shutil.rmtree(root)
        check = _check_in_full(Path(tmp), check_videos, frames, objects, size, threads,
                               seed, samples) if check_videos else None
    small, large = rows[0], rows[-1]
    growth = math.log(large["videos"] / small["videos"])

    def exponent(key: str, stage: str | None = None) -> float:
        a = small[key] if stage is None else small[key][stage]
        b = large[key] if stage is None else large[key][stage]
        return round(math.log(b / a) / growth, 2)

    return {
        "benchmark": "VIS preparation: frame-level JSON + split + crops, ours against the "
                     "authors' setup_dataset.py algorithm",
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "threads": threads,
        "load_average": [round(v, 1) for v in os.getloadavg()],
        "frames_per_video": frames, "objects_per_video": objects, "frame_size": list(size),
        "seed": seed, "workdir": str(workdir or tempfile.gettempdir()),
        "as_written_samples_per_split": samples,
        "as_written_in_full": as_written,
        "sizes": rows,
        "as_written_in_full_check": check,
        "scaling_exponent": {
            "ours_total": exponent("ours_total_s"),
            "authors_total": exponent("authors_total_s"),
            "ours_frames_and_split": exponent("ours", "frames_and_split_s"),
            "authors_frames_and_split": exponent("authors", "frames_and_split_s"),
            "ours_crops": exponent("ours", "crops_s"),
            "authors_crops": exponent("authors", "crops_s"),
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
    parser.add_argument("--as-written-samples", type=int, default=6,
                        help="crops per split whose fg_instances.json look-ups are timed as "
                             "the authors wrote them (cubic), for the estimate")
    parser.add_argument("--as-written", action="store_true",
                        help="run the cubic look-ups as written for every crop (hours at 400 "
                             "videos; for small sizes, to check the estimate)")
    parser.add_argument("--in-full", type=int, default=100, metavar="VIDEOS",
                        help="also run ours and the authors' algorithm with its look-ups as "
                             "written, in full, at this size (minutes), and compare their "
                             "time with its estimate (0: no such run)")
    args = parser.parse_args()
    result = run(args.sizes, args.frames, args.objects, tuple(args.frame_size), args.threads,
                 args.seed, args.workdir, args.as_written_samples, args.as_written,
                 args.in_full)
    write_result(args.out, "prepare", result)
    for row in result["sizes"]:
        print(f"{row['videos']} videos ({row['annotations']} annotations): ours "
              f"{row['ours_total_s']} s, authors' algorithm {row['authors_total_s']} s, ratio "
              f"{row['ratio_authors_over_ours']}x (CPU seconds {row['ours_cpu_s']} vs "
              f"{row['authors_cpu_s']}: {row['cpu_ratio_authors_over_ours']}x); with their "
              f"cubic fg_instances.json look-ups as written about "
              f"{row['authors_as_written_estimate_s']} s ({row['as_written_ratio_estimate']}x; "
              f"CPU {row['authors_as_written_estimate_cpu_s']} s, "
              f"{row['as_written_cpu_ratio_estimate']}x); "
              f"same crop names {row['same_crop_names']}, bytes {row['same_crop_bytes']}, "
              f"indexes {row['same_cropped_index']} / {row['same_frame_index']}")
    check = result["as_written_in_full_check"]
    if check:
        print(f"{check['videos']} videos, their algorithm as written run in full: "
              f"{check['measured_s']} s / {check['measured_cpu_s']} CPU s against ours "
              f"{check['ours_s']} s / {check['ours_cpu_s']} CPU s ({check['measured_ratio']}x, "
              f"CPU {check['measured_cpu_ratio']}x; same crop bytes {check['same_crop_bytes']}, "
              f"indexes {check['same_cropped_index']} / {check['same_frame_index']}); their "
              f"time estimated from sampled look-ups {check['estimated_s']} s / "
              f"{check['estimated_cpu_s']} CPU s")
    exp = result["scaling_exponent"]
    print(f"scaling exponent (1 = linear, 2 = quadratic): ours {exp['ours_total']}, "
          f"authors {exp['authors_total']} (frames+split: ours {exp['ours_frames_and_split']}, "
          f"authors {exp['authors_frames_and_split']})")


if __name__ == "__main__":
    main()

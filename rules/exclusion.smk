# Stage: index exclusion (REFERENCE "Detection, segmentation, index exclusion"). Per image:
# NMS on the detections, optional confidence floor, mask IoU between ground-truth and
# detection masks. VIS test frames: Hungarian matching against the ground-truth objects
# (IoU >= match_iou). CUHK03 / Market galleries (every image a person): the best-overlapping
# detection against the MGCAM mask or the whole image. The lists name exactly the crops the
# evaluation indexes; a summary of the counts per category goes beside (and into the log).

import json
import os
import shlex

from overlearning.core.names import MASK_FOLDER_SUFFIX, PERSON_FOLDERS as RAW_PERSON_FOLDERS

# exclusion.person_gt is not passed: the rule turns it into the --gt-masks flag.
EXCLUSION_SETTINGS = picked(
    config["exclusion"], "nms_iou", "min_confidence", "match_iou", "matching"
)


def exclusion_targets():
    return [
        f"{RESULTS}/exclusion/{s}{ext}"
        for s in config["detection"]["sets"]
        for ext in (".json", ".summary.json")
    ] + ([f"{RESULTS}/exclusion/counts.html"] if config["detection"]["sets"] else [])


def mgcam_gallery_masks(person_set):
    """The raw dataset's MGCAM mask folder of a person set's gallery (bounding_box_test_seg)."""
    dataset, folder = PERSON_SOURCES[person_set]
    gallery = RAW_PERSON_FOLDERS["foregroundImages_cropped"]
    return os.path.join(raw_path(dataset, "masks"), folder, gallery + MASK_FOLDER_SUFFIX)


def person_gt_inputs(wildcards):
    """MGCAM masks are read from the extracted dataset; whole-image masks need nothing."""
    if config["exclusion"]["person_gt"] != "mgcam":
        return []
    return raw_root(PERSON_SOURCES[wildcards.person_set][0])


def person_gt_flag(wildcards):
    if config["exclusion"]["person_gt"] != "mgcam":
        return ""
    return f"--gt-masks '{mgcam_gallery_masks(wildcards.person_set)}'"


# Ground-truth mode on the VIS test split: each object's frame-level mask against the
# detections of its frame.
rule exclusion_vis_test:
    input:
        detections=f"{RESULTS}/detections/vis_test.json",
        masks=f"{RESULTS}/masks/vis_test.json",
        frame_index=f"{DATA}/vis/test/fg_instances.json",
        cropped_index=f"{DATA}/vis/test/fg_instances_cropped.json",
        instances=f"{DATA}/vis/test/instances.json",
    output:
        exclusion=f"{RESULTS}/exclusion/vis_test.json",
        summary=f"{RESULTS}/exclusion/vis_test.summary.json",
    log:
        log_path("exclusion_vis_test"),
    benchmark:
        bench_path("exclusion_vis_test")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        exclusion=EXCLUSION_SETTINGS,
        person_label=config["detection"]["person_label"],
        person_category=config["preparation"]["vis_person_category"],
    shell:
        script("exclusion.py") + " --detections {input.detections:q} --masks {input.masks:q}"
        " --frame-index {input.frame_index:q} --cropped-index {input.cropped_index:q}"
        " --instances {input.instances:q} --person-category {params.person_category}"
        " --exclusion {params.exclusion:q} --person-label {params.person_label:q}"
        " --out {output.exclusion:q} --summary {output.summary:q} > {log} 2>&1"


# Detection-only mode on a person gallery: every image is one person.
rule exclusion_person_set:
    input:
        detections=f"{RESULTS}/detections/{{person_set}}.json",
        masks=f"{RESULTS}/masks/{{person_set}}.json",
        gallery=lambda wildcards: f"{person_root(wildcards.person_set)}/foregroundImages_cropped.zip",
        gt=person_gt_inputs,
    output:
        exclusion=f"{RESULTS}/exclusion/{{person_set}}.json",
        summary=f"{RESULTS}/exclusion/{{person_set}}.summary.json",
    log:
        log_path("exclusion_person_set", "{person_set}"),
    benchmark:
        bench_path("exclusion_person_set", "{person_set}")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        exclusion=EXCLUSION_SETTINGS,
        person_label=config["detection"]["person_label"],
        gt_masks=person_gt_flag,
    shell:
        script("exclusion.py") + " --detections {input.detections:q} --masks {input.masks:q}"
        " --gallery {input.gallery:q} {params.gt_masks} --exclusion {params.exclusion:q}"
        " --person-label {params.person_label:q} --out {output.exclusion:q}"
        " --summary {output.summary:q} > {log} 2>&1"


# Seconds of work each: run beside Snakemake, never as a cluster job.
# The counts of every exclusion set in one HTML table for the report.
rule exclusion_counts:
    input:
        [f"{RESULTS}/exclusion/{s}.summary.json" for s in config["detection"]["sets"]],
    output:
        report(
            f"{RESULTS}/exclusion/counts.html",
            caption="../report/exclusion_counts.rst",
            category=REPORT_EXCLUSION,
            labels={"result": "counts per set"},
        ),
    log:
        log_path("exclusion_counts"),
    benchmark:
        bench_path("exclusion_counts")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        records=" ".join(
            f"--record {s} {shlex.quote(f'{RESULTS}/exclusion/{s}.summary.json')}"
            for s in config["detection"]["sets"]
        ),
    shell:
        script("render_tables.py") + " {params.records}"
        " --records-out {output:q} 'Index exclusion: what the detector removed, per set'"
        " > {log} 2>&1"

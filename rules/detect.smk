# Stage: detection and segmentation (REFERENCE "Detection, segmentation, index exclusion").
#
#   every frame of the VIS test split and every CUHK03 / Market gallery image
#   -> GroundingDINO prompted with the 40 YouTube-VIS names, scattered over
#      detection.shards jobs and gathered into one file per set
#   -> SAM mask (largest contour) for every detection, one image encode per image
#   CUHK03 / Market queries -> GroundingDINO with garment names + SAM -> upper-clothes probes

import json
import os
import re

DETECT = config["detection"]
DETECTION_SETS = list(DETECT["sets"])
N_SHARDS = DETECT["shards"]
DETECTION_PERSON_SETS = [s for s in DETECTION_SETS if s in PERSON_SETS]
CLOTHES_PERSON_SETS = list(config["evaluation"]["person_sets"])
# Person roots relative to DATA (cuhk03/labeled, ...) -> person set: the {person_dir} wildcard.
CLOTHES_DIRS = {os.path.relpath(person_root(name), DATA): name for name in PERSON_SETS}

# Only the settings each step reads, so that editing another model or section reruns nothing.
DETECTOR_MODELS = json.dumps({"grounding_dino": config["models"]["grounding_dino"]}, sort_keys=True)
SEGMENTER_MODELS = json.dumps({"sam": config["models"]["sam"]}, sort_keys=True)
BOTH_MODELS = json.dumps(
    {k: config["models"][k] for k in ("grounding_dino", "sam")}, sort_keys=True
)
DETECTION_SETTINGS = picked(
    DETECT,
    "prompts",
    "box_threshold",
    "text_threshold",
    "batch_size",
    "image_size",
    "max_image_size",
    "person_label",
    "batching",
    "precision",
)
SEGMENTATION_SETTINGS = picked(
    config["segmentation"], "mask_threshold", "multimask", "batch_size", "precision"
)
# The clothes probe prompts its own garment names: of detection.* it reads only the input
# size and batch size.
CLOTHES_DETECTION = picked(DETECT, "image_size", "max_image_size", "batch_size")
CLOTHES_SETTINGS = picked(
    config["clothes"],
    "method",
    "segformer_labels",
    "segformer_size",
    "prompts",
    "box_threshold",
    "text_threshold",
    "on_missing",
)
CLOTHES_MODELS = json.dumps(
    {
        k: config["models"][k]
        for k in ("grounding_dino", "sam", "segformer_clothes")
        if k in config["models"]
    },
    sort_keys=True,
)


wildcard_constraints:
    set="|".join(["vis_test", *PERSON_SETS]),
    shard=r"\d+",


def detection_images_from(wildcards):
    """Where a set's image list comes from: the split's frames, or the gallery pack."""
    if wildcards.set == "vis_test":
        return f"{DATA}/vis/test/instances.json"
    return f"{person_root(wildcards.set)}/foregroundImages_cropped.zip"


def detection_image_root(wildcards):
    """The folder (raw frames) or pack (a gallery) the set's image names are relative to."""
    if wildcards.set == "vis_test":
        return raw_path("youtube_vis", "images")
    return f"{person_root(wildcards.set)}/foregroundImages_cropped.zip"


def detection_raw_images(wildcards):
    """VIS frames are read from the extracted dataset (a rule's output when archives are used)."""
    return raw_root("youtube_vis") if wildcards.set == "vis_test" else []


def detection_shards(wildcards):
    return [
        f"{RESULTS}/detections/{wildcards.set}/shard-{i}-of-{N_SHARDS}.json"
        for i in range(N_SHARDS)
    ]


def detection_targets():
    targets = [f"{RESULTS}/detections/{s}.json" for s in DETECTION_SETS]
    targets += [f"{RESULTS}/masks/{s}.json" for s in DETECTION_SETS]
    for person_set in CLOTHES_PERSON_SETS:
        person_dir = os.path.relpath(person_root(person_set), DATA)
        targets += [
            f"{DATA}/{person_dir}/probes/clothes.zip",
            f"{RESULTS}/detections/clothes/{person_dir}.json",
        ]
    return targets


# Scatter: GroundingDINO on the shard-th slice of the set's sorted images; a box is kept
# when a prompt token scores above box_threshold, its label is the prompt text above
# text_threshold.
rule detect_shard:
    input:
        images=detection_images_from,
        raw=detection_raw_images,
        manifest=f"{WEIGHTS}/manifest.json",
    output:
        f"{RESULTS}/detections/{{set}}/shard-{{shard}}-of-{N_SHARDS}.json",
    log:
        log_path("detect_shard", "{set}/{shard}"),
    benchmark:
        bench_path("detect_shard", "{set}/{shard}")
    container:
        container_for("gpu")
    threads: threads_for("detect")
    resources:
        mem_mb=mem_for("detect"),
        runtime=runtime_for("detect"),
    params:
        image_root=detection_image_root,
        models=DETECTOR_MODELS,
        detection=DETECTION_SETTINGS,
        cache=lambda wildcards, input: os.path.dirname(input.manifest),
        shards=N_SHARDS,
    shell:
        script("detect_shard.py") + " --images-from {input.images:q}"
        " --image-root {params.image_root:q} --models {params.models:q}"
        " --detection {params.detection:q} --cache {params.cache:q} --shard {wildcards.shard}"
        " --shards {params.shards} --threads {threads} --out {output:q} > {log} 2>&1"


# Gather: the shards of a set, checked to cover its image list exactly once.
rule gather_detections:
    input:
        shards=detection_shards,
        images=detection_images_from,
    output:
        f"{RESULTS}/detections/{{set}}.json",
    log:
        log_path("gather_detections", "{set}"),
    benchmark:
        bench_path("gather_detections", "{set}")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        person_label=DETECT["person_label"],
    shell:
        script("gather_detections.py") + " --shards {input.shards:q}"
        " --images-from {input.images:q} --person-label {params.person_label:q}"
        " --out {output:q} > {log} 2>&1"


# SAM on every detection box (all boxes of an image in one call), the mask thresholded and
# reduced to its largest external contour.
rule segment:
    input:
        detections=f"{RESULTS}/detections/{{set}}.json",
        images=detection_images_from,
        raw=detection_raw_images,
        manifest=f"{WEIGHTS}/manifest.json",
    output:
        f"{RESULTS}/masks/{{set}}.json",
    log:
        log_path("segment", "{set}"),
    benchmark:
        bench_path("segment", "{set}")
    container:
        container_for("gpu")
    threads: threads_for("segment")
    resources:
        mem_mb=mem_for("segment"),
        runtime=runtime_for("segment"),
    params:
        image_root=detection_image_root,
        models=SEGMENTER_MODELS,
        segmentation=SEGMENTATION_SETTINGS,
        cache=lambda wildcards, input: os.path.dirname(input.manifest),
    shell:
        script("segment.py") + " --detections {input.detections:q}"
        " --image-root {params.image_root:q} --models {params.models:q}"
        " --segmentation {params.segmentation:q} --cache {params.cache:q}"
        " --threads {threads} --out {output:q} > {log} 2>&1"


# Partial-person probe (REFERENCE step 6): the garment of each masked query, masked and
# cropped: the pixels a clothes segmenter labels upper-clothes or dress (the authors' default),
# or SAM on GroundingDINO's best garment box; images without a garment skipped or kept whole.
rule clothes_probe:
    input:
        queries=f"{DATA}/{{person_dir}}/foreground_query.zip",
        manifest=f"{WEIGHTS}/manifest.json",
    output:
        probe=f"{DATA}/{{person_dir}}/probes/clothes.zip",
        record=f"{RESULTS}/detections/clothes/{{person_dir}}.json",
    log:
        log_path("clothes_probe", "{person_dir}"),
    benchmark:
        bench_path("clothes_probe", "{person_dir}")
    wildcard_constraints:
        person_dir="|".join(re.escape(d) for d in CLOTHES_DIRS),
    container:
        container_for("gpu")
    threads: threads_for("detect")
    resources:
        mem_mb=mem_for("detect"),
        runtime=runtime_for("detect"),
    params:
        models=CLOTHES_MODELS,
        clothes=CLOTHES_SETTINGS,
        detection=CLOTHES_DETECTION,
        segmentation=SEGMENTATION_SETTINGS,
        cache=lambda wildcards, input: os.path.dirname(input.manifest),
        quality=config["preparation"]["jpeg_quality"],
    shell:
        script("clothes_probe.py") + " --queries {input.queries:q} --out {output.probe:q}"
        " --record {output.record:q} --models {params.models:q} --clothes {params.clothes:q}"
        " --detection {params.detection:q} --segmentation {params.segmentation:q}"
        " --cache {params.cache:q} --quality {params.quality} --threads {threads}"
        " > {log} 2>&1"

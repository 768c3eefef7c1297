# Stage: datasets -- from the extracted downloads to the image sets the study trains and
# evaluates on (REFERENCE.md, "Datasets and what is made of them"; docs/datasets.md).
#
#   YouTube-VIS: video-level JSON -> frame-level JSON -> seeded 80/10/10 video split
#                -> foreground crops of every object in every frame, per split
#   OVIS:        video-level JSON -> frame-level JSON -> foreground crops (all distractors)
#   CUHK03-NP, Market-1501: query and gallery masked with the MGCAM person masks
#                -> partial-person probes made from the masked queries
#
# Every image set is written as one pack (an uncompressed ZIP whose members are the study's
# files, byte for byte: overlearning/core/packs.py): `<folder>.zip` where the study has a
# folder of one file per image.

import os
import re

PREP = config["preparation"]
VIS = f"{DATA}/vis"
OVIS_TEST = f"{DATA}/ovis/test"
CROP_FILES = ("foregroundImages_cropped.zip", "fg_instances_cropped.json", "fg_instances.json")
PERSON_FOLDERS = ("foreground_query", "foregroundImages_cropped")
IMAGE_FLAGS = (
    " --ext {params.ext} --quality {params.quality} --threads {threads}"
    " --max-image-pixels {params.max_image_pixels}"
)
IMAGE_PARAMS = {
    "ext": PREP["image_ext"],
    "quality": PREP["jpeg_quality"],
    "max_image_pixels": PREP["max_image_pixels"],
}

# Person set -> (dataset, folder of the set inside the dataset's images / masks root).
PERSON_SOURCES = {
    "cuhk03_labeled": ("cuhk03", "labeled"),
    "cuhk03_detected": ("cuhk03", "detected"),
    "market1501": ("market1501", ""),
}
# Person roots relative to DATA (cuhk03/labeled, ...): the {person_dir} wildcard.
PERSON_DIRS = {os.path.relpath(person_root(name), DATA): name for name in PERSON_SETS}


def raw_path(dataset, key):
    """A configured path (images, annotations, masks) inside a dataset's extracted root."""
    return os.path.join(raw_root(dataset), config["datasets"][dataset][key])


def person_source(person_dir, key):
    dataset, folder = PERSON_SOURCES[PERSON_DIRS[person_dir]]
    return os.path.join(raw_path(dataset, key), folder)


def person_raw_root(wildcards):
    return raw_root(PERSON_SOURCES[PERSON_DIRS[wildcards.person_dir]][0])


# Step 1 (YouTube-VIS): one image per frame, one annotation per object and frame; the
# object's position in the video-level list is its id (and the crop's label). The object
# count is kept to offset the OVIS labels.
rule vis_frames:
    input:
        raw=raw_root("youtube_vis"),
    output:
        frames=f"{VIS}/frames.json",
        objects=f"{VIS}/objects.json",
    log:
        log_path("vis_frames"),
    benchmark:
        bench_path("vis_frames")
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        annotations=raw_path("youtube_vis", "annotations"),
        person_category=PREP["vis_person_category"],
    shell:
        script("vis_frames.py") + " --annotations {params.annotations}"
        " --out {output.frames} --objects-out {output.objects}"
        " --person-category {params.person_category} > {log} 2>&1"


# Step 2: the study's split -- videos shuffled with random.seed(123), cut 80/10/10.
rule vis_split:
    input:
        frames=f"{VIS}/frames.json",
    output:
        **{split: f"{VIS}/{split}/instances.json" for split in VIS_SPLITS},
    log:
        log_path("vis_split"),
    benchmark:
        bench_path("vis_split")
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        cuts=" ".join(str(c) for c in PREP["split"]),
        seed=PREP["split_seed"],
    shell:
        script("vis_split.py") + " --frames {input.frames} --train {output.train}"
        " --valid {output.valid} --test {output.test} --cuts {params.cuts}"
        " --seed {params.seed} > {log} 2>&1"


# Step 3: every object of every frame of a split, cropped to its box and masked.
rule vis_crops:
    input:
        instances=f"{VIS}/{{split}}/instances.json",
        raw=raw_root("youtube_vis"),
    output:
        crops=f"{VIS}/{{split}}/foregroundImages_cropped.zip",
        cropped_index=f"{VIS}/{{split}}/fg_instances_cropped.json",
        frame_index=f"{VIS}/{{split}}/fg_instances.json",
    log:
        log_path("vis_crops", "{split}"),
    benchmark:
        bench_path("vis_crops", "{split}")
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        **IMAGE_PARAMS,
        images=raw_path("youtube_vis", "images"),
        out_dir=lambda wildcards, output: os.path.dirname(output.cropped_index),
    shell:
        script("vis_crops.py") + " --instances {input.instances} --images {params.images}"
        " --out-dir {params.out_dir}" + IMAGE_FLAGS + " > {log} 2>&1"


# OVIS, step 1: the same frame-level conversion; all of OVIS is the distractor test set.
rule ovis_frames:
    input:
        raw=raw_root("ovis"),
    output:
        instances=f"{OVIS_TEST}/instances.json",
    log:
        log_path("ovis_frames"),
    benchmark:
        bench_path("ovis_frames")
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        annotations=raw_path("ovis", "annotations"),
        person_category=PREP["ovis_person_category"],
    shell:
        script("ovis_frames.py") + " --annotations {params.annotations}"
        " --out {output.instances} --person-category {params.person_category} > {log} 2>&1"


# OVIS, step 3: crops as for YouTube-VIS; object ids are offset by the YouTube-VIS object
# count so distractor labels never collide with the test labels.
rule ovis_crops:
    input:
        instances=f"{OVIS_TEST}/instances.json",
        vis_objects=f"{VIS}/objects.json",
        raw=raw_root("ovis"),
    output:
        crops=f"{OVIS_TEST}/foregroundImages_cropped.zip",
        cropped_index=f"{OVIS_TEST}/fg_instances_cropped.json",
        frame_index=f"{OVIS_TEST}/fg_instances.json",
    log:
        log_path("ovis_crops"),
    benchmark:
        bench_path("ovis_crops")
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        **IMAGE_PARAMS,
        images=raw_path("ovis", "images"),
        out_dir=lambda wildcards, output: os.path.dirname(output.cropped_index),
    shell:
        script("ovis_crops.py") + " --instances {input.instances} --images {params.images}"
        " --out-dir {params.out_dir} --vis-objects {input.vis_objects}"
        + IMAGE_FLAGS
        + " > {log} 2>&1"


# Step 5: person re-ID sets -- query and gallery (bounding_box_test) masked with the MGCAM
# person masks; Market's junk (-1) and distractor (0000) images per config.
rule person_set:
    input:
        raw=person_raw_root,
    output:
        **{folder: f"{DATA}/{{person_dir}}/{folder}.zip" for folder in PERSON_FOLDERS},
    log:
        log_path("person_set", "{person_dir}"),
    benchmark:
        bench_path("person_set", "{person_dir}")
    wildcard_constraints:
        person_dir="|".join(re.escape(d) for d in PERSON_DIRS),
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        **IMAGE_PARAMS,
        images=lambda wildcards: person_source(wildcards.person_dir, "images"),
        masks=lambda wildcards: person_source(wildcards.person_dir, "masks"),
        out=lambda wildcards, output: os.path.dirname(output.foreground_query),
        junk=PREP["market_junk"],
        distractors=PREP["market_distractors"],
        naming=lambda wildcards: PERSON_SOURCES[PERSON_DIRS[wildcards.person_dir]][0],
    shell:
        script("person_set.py") + " --images {params.images} --masks {params.masks}"
        " --out {params.out} --junk {params.junk} --distractors {params.distractors}"
        " --naming {params.naming}" + IMAGE_FLAGS + " > {log} 2>&1"


# Step 6: partial-person probes from the masked queries -- the torso band (drop the top
# 40% and the bottom 57.5%) and the occlusion grid (only one half of the person visible).
rule person_probes:
    input:
        queries=f"{DATA}/{{person_dir}}/foreground_query.zip",
    output:
        probe=f"{DATA}/{{person_dir}}/probes/{{probe}}.zip",
    log:
        log_path("person_probes", "{person_dir}/{probe}"),
    benchmark:
        bench_path("person_probes", "{person_dir}/{probe}")
    wildcard_constraints:
        person_dir="|".join(re.escape(d) for d in PERSON_DIRS),
        probe="|".join(PROBES),
    container:
        container_for("cpu")
    threads: threads_for("prepare")
    resources:
        mem_mb=mem_for("prepare"),
        runtime=runtime_for("prepare"),
    params:
        **IMAGE_PARAMS,
        top=PREP["probes"]["torso"]["top"],
        bottom=PREP["probes"]["torso"]["bottom"],
    shell:
        script("person_probes.py") + " --queries {input.queries} --out {output.probe}"
        " --probe {wildcards.probe} --top {params.top} --bottom {params.bottom}"
        + IMAGE_FLAGS
        + " > {log} 2>&1"


def dataset_targets():
    """Every prepared set: VIS splits and crops, OVIS crops, person sets and their probes."""
    targets = [f"{VIS}/{split}/instances.json" for split in VIS_SPLITS]
    targets += [f"{VIS}/{split}/{name}" for split in VIS_SPLITS for name in CROP_FILES]
    targets += [f"{OVIS_TEST}/instances.json"] + [f"{OVIS_TEST}/{name}" for name in CROP_FILES]
    for root in PERSON_SETS.values():
        targets += [f"{root}/{folder}.zip" for folder in PERSON_FOLDERS]
        targets += [f"{root}/probes/{probe}.zip" for probe in PROBES]
    return targets

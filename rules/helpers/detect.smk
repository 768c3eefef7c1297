# Functions of rules/detect.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


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

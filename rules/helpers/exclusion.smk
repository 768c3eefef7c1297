# Functions of rules/exclusion.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


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

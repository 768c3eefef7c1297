# Stage: extraction -- the raw downloads, verified, and read in place or unpacked.
#
# Each dataset given as archives (config datasets.<name>.archives) is checked against its
# configured sha256/md5. Zip downloads and plain files (OVIS's annotations_train.json) are
# read in place: `verify_downloads` checks every member name (no absolute names, '..',
# links, devices or encrypted members) and writes {DATA}/raw/<name>.json, through which the
# datasets and detection rules read the members (paths below it lead into the downloads);
# nothing is unpacked. Tar downloads are unpacked into {DATA}/raw/<name>/ entry by entry
# with the same checks. A truncated or corrupt download stops the rule naming the file,
# and nothing half-written is left behind. Datasets given as an already-extracted
# `directory` skip this step (raw_root() points at it).


def archive_checksums(dataset, algorithm):
    """One value per archive, '-' where the config gives none (the script's convention)."""
    return [a.get(algorithm) or "-" for a in config["datasets"][dataset]["archives"]]


IN_PLACE = [name for name, source in config["datasets"].items() if reads_in_place(name)]
EXTRACTED = [name for name in config["datasets"] if name not in IN_PLACE]


# Verified zip downloads, read in place: the manifest the readers open them through.
rule verify_downloads:
    input:
        lambda wildcards: raw_archives(wildcards.dataset),
    output:
        f"{DATA}/raw/{{dataset}}.json",
    log:
        log_path("verify_downloads", "{dataset}"),
    benchmark:
        bench_path("verify_downloads", "{dataset}")
    wildcard_constraints:
        dataset="|".join(IN_PLACE) or "$^",
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        sha256=lambda wildcards: archive_checksums(wildcards.dataset, "sha256"),
        md5=lambda wildcards: archive_checksums(wildcards.dataset, "md5"),
    shell:
        script("extract_dataset.py") + " --in-place --archives {input} --sha256 {params.sha256}"
        " --md5 {params.md5} --out {output} > {log} 2>&1"


# Verified, safe extraction of one dataset's tar downloads.
rule extract:
    input:
        lambda wildcards: raw_archives(wildcards.dataset),
    output:
        directory(f"{DATA}/raw/{{dataset}}"),
    log:
        log_path("extract", "{dataset}"),
    benchmark:
        bench_path("extract", "{dataset}")
    wildcard_constraints:
        dataset="|".join(EXTRACTED) or "$^",
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        sha256=lambda wildcards: archive_checksums(wildcards.dataset, "sha256"),
        md5=lambda wildcards: archive_checksums(wildcards.dataset, "md5"),
    shell:
        script("extract_dataset.py") + " --archives {input} --sha256 {params.sha256}"
        " --md5 {params.md5} --out {output} > {log} 2>&1"


def extract_targets():
    return [
        raw_root(name) for name, source in config["datasets"].items() if not source.get("directory")
    ]

# Stage: extraction -- the raw downloads, verified and unpacked.
#
# Each dataset given as archives (config datasets.<name>.archives) is checked against its
# configured sha256/md5 and unpacked into {DATA}/raw/<name>/: zip and tar archives entry by
# entry, refusing absolute names, '..', links leaving the folder and device files; plain
# files (OVIS's annotations_train.json) copied as they are. A truncated or corrupt download
# stops the rule naming the file, and nothing half-extracted is left behind. Datasets given
# as an already-extracted `directory` skip this step (raw_root() points at it).


include: "helpers/extract.smk"


# Verified, safe extraction of one dataset's downloads.
rule extract:
    input:
        lambda wildcards: raw_archives(wildcards.dataset),
    output:
        directory(f"{DATA}/raw/{{dataset}}"),
    log:
        log_path("extract", "{dataset}"),
    benchmark:
        bench_path("extract", "{dataset}")
    conda:
        conda_for("cpu")
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

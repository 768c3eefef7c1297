# Stage: downloads not made yet. The official dataset downloads are fetched by hand
# (docs/hpc.md, step 3). Until they are there, this rule stands in for them so that
# `snakemake -n`, `--dag` and `--lint` show the whole plan first; a real run that needs it
# refuses at start, naming every missing download (onstart, rules/common.smk). Should it
# still be started (--no-hooks), its job fails with the same list and writes nothing.

if MISSING_DOWNLOADS:

    rule missing_downloads:
        output:
            [directory(m.path) if m.directory else m.path for m in MISSING_DOWNLOADS],
        log:
            log_path("missing_downloads"),
        benchmark:
            bench_path("missing_downloads")
        localrule: True
        conda:
            conda_for("cpu")
        container:
            container_for("cpu")
        threads: 1
        resources:
            mem_mb=mem_for("default"),
            runtime=runtime_for("default"),
        params:
            missing=" ".join(
                f"--missing {shlex.quote(m.key)} {shlex.quote(m.path)}" for m in MISSING_DOWNLOADS
            ),
        shell:
            script("missing_downloads.py") + " {params.missing} > {log} 2>&1"

# Functions of rules/explain.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def explain_outputs(setting):
    return [f"{RESULTS}/explain/{setting}/query_{i}.png" for i in range(EXPLAIN["queries"])]


def explain_targets():
    return [path for setting in EXPLAIN["settings"] for path in explain_outputs(setting)]


def explain_inputs(wildcards):
    return dict(
        model_files(wildcards.setting),
        queries=embedding_path(wildcards.setting, EXPLAIN_QUERIES),
        gallery=embedding_path(wildcards.setting, EXPLAIN_GALLERY),
        query_images=EMBEDDING_SOURCES[EXPLAIN_QUERIES]["images"],
        gallery_images=EMBEDDING_SOURCES[EXPLAIN_GALLERY]["images"],
    )

# Functions of rules/tables.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def figure_images(wildcards):
    """The evaluation's query images and each reference set's images (set name -> folder)."""
    name, _ = EVALUATIONS[wildcards.evaluation]["query"]
    refs = {
        ref: EMBEDDING_SOURCES[ref]["images"]
        for ref, _, _ in EVALUATIONS[wildcards.evaluation]["references"]
    }
    return EMBEDDING_SOURCES[name]["images"], refs


def figure_inputs(wildcards):
    """What a figure drawn from stored results reads: the per-query evidence of its
    metrics file and the images (never embeddings: nothing is searched again)."""
    query_root, refs = figure_images(wildcards)
    metrics = metrics_path(wildcards.setting, wildcards.evaluation, wildcards.exclusion)
    return {"evidence": evidence_file(metrics), "images": sorted({query_root, *refs.values()})}


def figure_flags(wildcards):
    query_root, refs = figure_images(wildcards)
    flags = [f"--query-root {shlex.quote(query_root)}"]
    flags += [f"--reference {name} {shlex.quote(root)}" for name, root in refs.items()]
    return " ".join(flags)


def grid_files():
    return [
        f"{FIGURES_DIR}/grids/{setting}/{evaluation}_{exclusion}.png"
        for setting in SETTINGS
        for evaluation in GRID_EVALUATIONS
        for exclusion in EVAL["exclusion"]
        if evaluation_available(evaluation, exclusion)
    ]


def leak_files():
    """The leak strips: the four combinations of the two safeguards (baseline and
    safeguarded setting, exclusion off and on) for each leak evaluation."""
    return [
        f"{FIGURES_DIR}/leaks/{setting}/{evaluation}_{exclusion}.png"
        for evaluation in LEAK_EVALUATIONS
        for setting in dict.fromkeys([HEADLINE["baseline"], HEADLINE["safeguarded"]])
        for exclusion in EVAL["exclusion"]
        if setting in EVALUATED and evaluation_available(evaluation, exclusion)
    ]


def table_targets():
    tables = [f"{TABLES_DIR}/{stem}.{ext}" for stem in TABLE_STEMS for ext in ("csv", "md", "tex")]
    tables += [
        f"{TABLES_DIR}/details.csv",
        f"{TABLES_DIR}/headline.json",
        f"{TABLES_DIR}/headline.md",
    ]
    tables += [f"{TABLES_DIR}/{stem}.html" for stem in TABLE_STEMS + ["details", "headline"]]
    figures = [f"{FIGURES_DIR}/{name}.png" for name in ("privacy_utility", "roc", "embedding_map")]
    return tables + figures + grid_files() + leak_files()

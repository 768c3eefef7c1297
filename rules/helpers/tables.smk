# Functions of rules/tables.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def grid_parts(wildcards):
    """Query and reference parts of the grid's evaluation, each with its image folder."""
    name, subset = EVALUATIONS[wildcards.evaluation]["query"]
    query = (embedding_path(wildcards.setting, name), subset, EMBEDDING_SOURCES[name]["images"])
    refs = [
        (
            embedding_path(wildcards.setting, ref),
            ref_subset,
            exclusion_json(excl) if excl and wildcards.exclusion == "excluded" else None,
            EMBEDDING_SOURCES[ref]["images"],
        )
        for ref, ref_subset, excl in EVALUATIONS[wildcards.evaluation]["references"]
    ]
    return query, refs


def grid_inputs(wildcards):
    query, refs = grid_parts(wildcards)
    return {
        "embeddings": sorted({query[0]} | {r[0] for r in refs}),
        "exclusions": sorted({r[2] for r in refs if r[2]}),
        "images": sorted({query[2]} | {r[3] for r in refs}),
    }


def grid_flags(wildcards):
    query, refs = grid_parts(wildcards)
    flags = [f"--query {shlex.quote(query[0])} {query[1]} {shlex.quote(query[2])}"]
    flags += [
        f"--reference {shlex.quote(npz)} {subset} {shlex.quote(excl or '-')} {shlex.quote(root)}"
        for npz, subset, excl, root in refs
    ]
    return " ".join(flags)


def grid_files():
    return [
        f"{FIGURES_DIR}/grids/{setting}/{evaluation}_{exclusion}.png"
        for setting in SETTINGS
        for evaluation in GRID_EVALUATIONS
        for exclusion in EVAL["exclusion"]
        if evaluation_available(evaluation, exclusion)
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
    return tables + figures + grid_files()

# Stage: tables and figures (REFERENCE "Evaluation and tables"). The metrics files become
# the study's tables (one row per training setting and exclusion on/off, one column per
# evaluation) and its two headline numbers; figures show the privacy-utility trade-off,
# which queries succeed and fail, how persons sit in the embedding space, and pair ROCs.
# `snakemake --report report.html` collects everything marked with report() below.


include: "helpers/tables.smk"


report: "../report/workflow.rst"


FIGURES = EVAL["figures"]
HEADLINE = EVAL["headline"]
# The four headline choices the table script takes, named (not the whole section).
HEADLINE_PARAMS = {key: HEADLINE[key] for key in ("baseline", "safeguarded", "nonperson", "person")}
TABLES_DIR = f"{RESULTS}/tables"
FIGURES_DIR = f"{RESULTS}/figures"
TABLE_STEMS = ["main", "reid"]
# Evaluations drawn in the privacy-utility plot and the ROC figure: the person settings,
# not every probe (the tables hold those).
PERSON_PANELS = [HEADLINE["person"]] + [ps for ps in EVAL_PERSON_SETS if ps != HEADLINE["person"]]
ROC_PANELS = [ps for ps in EVAL_PERSON_SETS]
GRID_EVALUATIONS = [e for e in FIGURES["grid_evaluations"] if e in EVALUATIONS]
LEAK_EVALUATIONS = [e for e in FIGURES["leak_evaluations"] if e in EVALUATIONS]


# The tables: MAP@R per evaluation, the re-ID protocol per person set, every number, and
# the study's headline (person re-ID with both safeguards; non-person retrieval kept).
rule tables:
    input:
        metrics=all_metrics_files(),
    output:
        main_csv=f"{TABLES_DIR}/main.csv",
        main_md=f"{TABLES_DIR}/main.md",
        main_tex=f"{TABLES_DIR}/main.tex",
        reid_csv=f"{TABLES_DIR}/reid.csv",
        reid_md=f"{TABLES_DIR}/reid.md",
        reid_tex=f"{TABLES_DIR}/reid.tex",
        details=f"{TABLES_DIR}/details.csv",
        headline=f"{TABLES_DIR}/headline.json",
        headline_md=f"{TABLES_DIR}/headline.md",
        provenance=expand(
            f"{TABLES_DIR}/{{stem}}.provenance.json", stem=TABLE_STEMS + ["details", "headline"]
        ),
    log:
        log_path("tables"),
    benchmark:
        bench_path("tables")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        **HEADLINE_PARAMS,
        out_dir=lambda wildcards, output: os.path.dirname(output.details),
    shell:
        script("make_tables.py") + " --metrics {input.metrics:q} --baseline {params.baseline}"
        " --safeguarded {params.safeguarded} --nonperson {params.nonperson}"
        " --person {params.person} --out-dir {params.out_dir:q}"
        " > {log} 2>&1"


# Seconds of work each: run beside Snakemake, never as a cluster job.
# The tables as HTML pages for the report (the report offers CSV and JSON only as downloads).
rule tables_html:
    input:
        main=f"{TABLES_DIR}/main.csv",
        reid=f"{TABLES_DIR}/reid.csv",
        details=f"{TABLES_DIR}/details.csv",
        headline=f"{TABLES_DIR}/headline.json",
    output:
        main=report(
            f"{TABLES_DIR}/main.html",
            caption="../report/main_table.rst",
            category=REPORT_TABLES,
            labels={"table": "1 MAP@R per evaluation"},
        ),
        reid=report(
            f"{TABLES_DIR}/reid.html",
            caption="../report/reid_table.rst",
            category=REPORT_TABLES,
            labels={"table": "2 re-ID protocol"},
        ),
        details=report(
            f"{TABLES_DIR}/details.html",
            caption="../report/details_table.rst",
            category=REPORT_TABLES,
            labels={"table": "3 every metric"},
        ),
        headline=report(
            f"{TABLES_DIR}/headline.html",
            caption="../report/headline.rst",
            category=REPORT_TABLES,
            labels={"table": "0 headline"},
        ),
    log:
        log_path("tables_html"),
    benchmark:
        bench_path("tables_html")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    shell:
        script("render_tables.py")
        + " --fractions {input.main:q} {output.main:q} 'MAP@R per evaluation'"
        " --fractions {input.reid:q} {output.reid:q} 'Person re-ID protocol: Rank-1 and mAP'"
        " --fractions {input.details:q} {output.details:q} 'Every metric of every evaluation'"
        " --json {input.headline:q} {output.headline:q} 'The study in two numbers'"
        " > {log} 2>&1"


# Privacy vs utility: person MAP@R against non-person MAP@R, one point per table row.
rule privacy_utility:
    input:
        metrics=all_metrics_files(),
    output:
        report(
            f"{FIGURES_DIR}/privacy_utility.png",
            caption="../report/privacy_utility.rst",
            category=REPORT_FIGURES,
            labels={"figure": "1 privacy vs utility"},
        ),
    log:
        log_path("privacy_utility"),
    benchmark:
        bench_path("privacy_utility")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        nonperson=HEADLINE["nonperson"],
        person=PERSON_PANELS,
    shell:
        script("privacy_utility_plot.py") + " --metrics {input.metrics:q}"
        " --nonperson {params.nonperson} --person {params.person} --out {output:q} > {log} 2>&1"


# How separable are same and different persons: ROC of pair similarities per person set.
rule roc_curves:
    input:
        metrics=[f for f in all_metrics_files() if f.split("/")[-2] in ROC_PANELS],
    output:
        report(
            f"{FIGURES_DIR}/roc.png",
            caption="../report/roc.rst",
            category=REPORT_FIGURES,
            labels={"figure": "2 pair ROC"},
        ),
    log:
        log_path("roc_curves"),
    benchmark:
        bench_path("roc_curves")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        evaluations=ROC_PANELS,
    shell:
        script("roc_plot.py") + " --metrics {input.metrics:q} --evaluations {params.evaluations}"
        " --out {output:q} > {log} 2>&1"


# Where persons sit among the other objects in each model's embedding space.
rule embedding_map:
    input:
        embeddings=[embedding_path(setting, "vis_test") for setting in SETTINGS],
    output:
        report(
            f"{FIGURES_DIR}/embedding_map.png",
            caption="../report/embedding_map.rst",
            category=REPORT_FIGURES,
            labels={"figure": "3 embedding map"},
        ),
    log:
        log_path("embedding_map"),
    benchmark:
        bench_path("embedding_map")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        sets=" ".join(f"--set {s} {shlex.quote(embedding_path(s, 'vis_test'))}" for s in SETTINGS),
        method=FIGURES["embedding_map"],
        points=FIGURES["embedding_points"],
        seed=config["seed"],
    shell:
        script("embedding_map.py") + " {params.sets} --method {params.method}"
        " --max-points {params.points} --seed {params.seed} --threads {threads}"
        " --out {output:q} > {log} 2>&1"


# Best and worst queries of one model and evaluation, with their nearest indexed neighbours,
# drawn from the metrics job's per-query evidence (nothing is searched again).
rule query_grid:
    input:
        unpack(figure_inputs),
    output:
        report(
            f"{FIGURES_DIR}/grids/{{setting}}/{{evaluation}}_{{exclusion}}.png",
            caption="../report/query_grid.rst",
            category=REPORT_GRIDS,
            subcategory="{setting}",
            labels={
                "setting": "{setting}",
                "evaluation": "{evaluation}",
                "exclusion": "{exclusion}",
            },
        ),
    log:
        log_path("query_grid", "{setting}/{evaluation}_{exclusion}"),
    benchmark:
        bench_path("query_grid", "{setting}/{evaluation}_{exclusion}")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        parts=figure_flags,
        queries=FIGURES["grid_queries"],
        neighbours=FIGURES["grid_neighbours"],
    shell:
        script("query_grid.py") + " --evidence {input.evidence:q} {params.parts}"
        " --queries {params.queries} --neighbours {params.neighbours}"
        " --setting {wildcards.setting} --evaluation {wildcards.evaluation}"
        " --exclusion {wildcards.exclusion}"
        " --out {output:q} > {log} 2>&1"


# What the safeguards miss: per attacker, the queries that still find their person at rank 1
# and at ranks 2-5, as ranked strips with scores, from the stored per-query evidence.
rule leaks:
    input:
        unpack(figure_inputs),
    output:
        report(
            f"{FIGURES_DIR}/leaks/{{setting}}/{{evaluation}}_{{exclusion}}.png",
            caption="../report/leaks.rst",
            category=REPORT_LEAKS,
            subcategory="{evaluation}",
            labels={
                "setting": "{setting}",
                "evaluation": "{evaluation}",
                "exclusion": "{exclusion}",
            },
        ),
    log:
        log_path("leaks", "{setting}/{evaluation}_{exclusion}"),
    benchmark:
        bench_path("leaks", "{setting}/{evaluation}_{exclusion}")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        parts=figure_flags,
        queries=FIGURES["leak_queries"],
    shell:
        script("leak_strips.py") + " --evidence {input.evidence:q} {params.parts}"
        " --queries {params.queries} --setting {wildcards.setting}"
        " --evaluation {wildcards.evaluation} --exclusion {wildcards.exclusion}"
        " --out {output:q} > {log} 2>&1"

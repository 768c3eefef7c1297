# Stage: anonymise -- a third safeguard beside index exclusion and the confusion loss.
#
# Following the privacy-preserving re-ID literature (learnable anonymisation of pedestrian
# images, ACM MM 2022), person images stay in the search index but are desensitised:
# mosaic (blocks of s x s pixels), Gaussian blur (standard deviation s) or additive Gaussian
# noise (standard deviation s on the [0, 1] scale). Every (method, strength) of config
# anonymisation.methods is one variant; docs/anonymisation.md defines them exactly.
#
# Two policies decide which images are anonymised:
#   gt        (oracle)     every ground-truth person (every gallery image of a person set);
#   detected  (deployment) what the detector calls a person, i.e. exactly what index
#                          exclusion removes; persons it never detected are not indexed
#                          (as with exclusion), persons it called something else stay raw.
# Each anonymised set stores only the images it changes (changed.zip, a delta pack laid
# over the original set's pack when read), so the evaluation embeds and indexes it like the
# original without a copy of every unchanged image. Raw queries are
# then searched in the anonymised index with the evaluation's own scripts, and the results
# become extra rows (anon_<policy>_<variant>) beside "none" and "excluded" in one table.

import os

from overlearning.workflow.plans import ANON_POLICIES, AnonymisationPlan


include: "helpers/anonymise.smk"


ANON = config["anonymisation"]
ANON_PLAN = AnonymisationPlan.from_config(config, EVAL_PLAN)
ANON_ROOT = ANON_PLAN.root
ANON_VARIANTS = ANON_PLAN.variants
ANON_PERSON_SETS = ANON_PLAN.person_sets
VIS_TEST = f"{DATA}/vis/test"
# Anonymised set -> the raw set it copies, whose detections it follows, how to embed it;
# the evaluations whose index can be anonymised; the sets made for every variant
# (deployment sets only where the detector ran). See overlearning/workflow/plans.py.
ANON_SOURCES = ANON_PLAN.sources
ANON_EVALUATIONS = ANON_PLAN.evaluations
ANON_SETS = ANON_PLAN.sets


wildcard_constraints:
    anon_method="mosaic|blur|noise",
    anon_strength=r"[0-9][0-9.e+-]*",
    anon_policy="|".join(ANON_POLICIES),
    anon_set="|".join(ANON_SOURCES),


# Flags every anonymisation run shares: the method's exact knobs from the config.
ANON_FLAGS = (
    " --method {wildcards.anon_method} --strength {wildcards.anon_strength}"
    " --seed {params.seed} --background-level {params.background_level}"
    " --jpeg-quality {params.jpeg_quality}"
)
ANON_PARAMS = {
    "seed": ANON["seed"],
    "background_level": ANON["background_level"],
    # Anonymised crops are re-encoded exactly like the prepared crops.
    "jpeg_quality": config["preparation"]["jpeg_quality"],
}

anon_dir = ANON_PLAN.set_dir
anon_embedding_path = ANON_PLAN.embedding_path
anon_row = ANON_PLAN.row
anon_available = ANON_PLAN.available
setting_anon_jobs = ANON_PLAN.setting_jobs


# Anonymise the VIS test split's person crops (the index of the person/non-person queries).
rule anonymise_vis_test:
    input:
        images=f"{VIS_TEST}/foregroundImages_cropped.zip",
        index=f"{VIS_TEST}/fg_instances_cropped.json",
        exclusion=lambda wildcards: anon_detections(wildcards, "vis_test"),
    output:
        **anon_outputs("vis_test_{anon_policy}"),
    log:
        log_path("anonymise_vis_test", "{anon_method}_{anon_strength}/{anon_policy}"),
    benchmark:
        bench_path("anonymise_vis_test", "{anon_method}_{anon_strength}/{anon_policy}")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        **ANON_PARAMS,
        split=lambda wildcards, input: os.path.dirname(input.index),
        out=lambda wildcards, output: os.path.dirname(output.delta),
        person_category=config["preparation"]["vis_person_category"],
        selection=anon_selection_flags,
    shell:
        script("anonymise.py") + " {params.selection} --images {input.images}"
        " --split-dir {params.split} --person-category {params.person_category}"
        + ANON_FLAGS
        + " --out {params.out} > {log} 2>&1"


# Anonymise a person re-ID gallery (CUHK03-NP, Market-1501); the queries stay raw (the
# photo an investigator would search with).
rule anonymise_person_gallery:
    input:
        gallery=lambda wildcards: f"{person_root(wildcards.person_set)}/foregroundImages_cropped.zip",
        exclusion=lambda wildcards: anon_detections(wildcards, wildcards.person_set),
    output:
        **anon_outputs("{person_set}_{anon_policy}"),
    log:
        log_path(
            "anonymise_person_gallery", "{anon_method}_{anon_strength}/{person_set}_{anon_policy}"
        ),
    benchmark:
        bench_path(
            "anonymise_person_gallery", "{anon_method}_{anon_strength}/{person_set}_{anon_policy}"
        )
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        **ANON_PARAMS,
        selection=anon_selection_flags,
        out=lambda wildcards, output: os.path.dirname(output.delta),
    shell:
        script("anonymise.py")
        + " {params.selection} --images {input.gallery}"
        + ANON_FLAGS
        + " --out {params.out} > {log} 2>&1"


# Embed every anonymised set with a trained model (the evaluation's embed script).
rule embed_anonymised:
    input:
        unpack(lambda wildcards: model_files(wildcards.setting)),
        images=ANON_PLAN.embed_inputs(),
    output:
        ANON_PLAN.embedding_files("{setting}"),
    log:
        log_path("embed_anonymised", "{setting}"),
    benchmark:
        bench_path("embed_anonymised", "{setting}")
    conda:
        conda_for("gpu")
    container:
        container_for("gpu")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
    params:
        model_dir=lambda wildcards: EVAL_PLAN.model_dir(wildcards.setting),
        trunk=eval_trunk_json,
        dim=config["training"]["embedding_dim"],
        sets=lambda wildcards: embed_flags(ANON_PLAN.embed_sets(wildcards.setting)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
        device=COMPUTE_DEVICE,
    shell:
        script("embed.py") + " --device {params.device} --rule embed_anonymised"
        " --model-dir {params.model_dir:q} --trunk {params.trunk:q}"
        " --embedding-dim {params.dim} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Raw queries against the anonymised index: person re-ID and non-person retrieval per
# trained model, policy and variant (non-person numbers change only where the detector
# anonymised a non-person).
rule metrics_anonymised:
    input:
        unpack(lambda wildcards: ANON_PLAN.plan_inputs(wildcards.setting)),
    output:
        metrics=[job["out"] for job in setting_anon_jobs("{setting}")],
        provenance=provenance_files(setting_anon_jobs("{setting}")),
        evidence=evidence_files(setting_anon_jobs("{setting}")),
    log:
        log_path("metrics_anonymised", "{setting}"),
    benchmark:
        bench_path("metrics_anonymised", "{setting}")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("metrics_anonymised")
    resources:
        mem_mb=mem_for("metrics_anonymised"),
        runtime=runtime_for("metrics_anonymised"),
    params:
        plan=lambda wildcards: json.dumps(setting_anon_jobs(wildcards.setting)),
        knn=config["evaluation"]["knn"],
        attackers=attacker_settings(),
        top_k=EVAL["evidence_top_k"],
    shell:
        script("compute_metrics.py") + " --plan {params.plan:q} --threads {threads}"
        " --knn {params.knn} --attackers {params.attackers:q} --top-k {params.top_k}"
        " > {log} 2>&1"


ANON_TABLES = f"{RESULTS}/tables/anonymisation"
ANON_TABLE_STEMS = ["main", "reid", "details", "headline"]


# All three safeguards in one table (the evaluation's table script, unchanged): rows per
# training setting -- none, excluded, anon_detected_<variant>, anon_gt_<variant>.
rule anonymisation_tables:
    input:
        metrics=anonymisation_metrics_files(),
    output:
        tables=[
            f"{ANON_TABLES}/{stem}.{ext}"
            for stem in ("main", "reid")
            for ext in ("csv", "md", "tex")
        ],
        details=f"{ANON_TABLES}/details.csv",
        headline=f"{ANON_TABLES}/headline.json",
        headline_md=f"{ANON_TABLES}/headline.md",
        provenance=[f"{ANON_TABLES}/{stem}.provenance.json" for stem in ANON_TABLE_STEMS],
    log:
        log_path("anonymisation_tables"),
    benchmark:
        bench_path("anonymisation_tables")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
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
        " --row-label safeguard > {log} 2>&1"


# Seconds of work each: run beside Snakemake, never as a cluster job.
# The comparison tables as HTML pages for the report.
rule anonymisation_tables_html:
    input:
        main=f"{ANON_TABLES}/main.csv",
        reid=f"{ANON_TABLES}/reid.csv",
        details=f"{ANON_TABLES}/details.csv",
        headline=f"{ANON_TABLES}/headline.json",
    output:
        main=report(
            f"{ANON_TABLES}/main.html",
            caption="../report/anonymisation_table.rst",
            category=REPORT_ANON,
            labels={"result": "1 MAP@R per safeguard"},
        ),
        reid=report(
            f"{ANON_TABLES}/reid.html",
            caption="../report/anonymisation_reid.rst",
            category=REPORT_ANON,
            labels={"result": "2 re-ID protocol per safeguard"},
        ),
        details=report(
            f"{ANON_TABLES}/details.html",
            caption="../report/details_table.rst",
            category=REPORT_ANON,
            labels={"result": "3 every metric"},
        ),
        headline=report(
            f"{ANON_TABLES}/headline.html",
            caption="../report/anonymisation_headline.rst",
            category=REPORT_ANON,
            labels={"result": "4 headline numbers"},
        ),
    log:
        log_path("anonymisation_tables_html"),
    benchmark:
        bench_path("anonymisation_tables_html")
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
        + " --fractions {input.main:q} {output.main:q} 'MAP@R per training setting and safeguard'"
        " --fractions {input.reid:q} {output.reid:q} 'Person re-ID protocol per safeguard'"
        " --fractions {input.details:q} {output.details:q} 'Every metric, every safeguard'"
        " --json {input.headline:q} {output.headline:q} 'Headline numbers with anonymisation rows'"
        " > {log} 2>&1"


# Privacy vs utility with every safeguard: one point per table row (the evaluation's plot).
rule anonymisation_privacy_utility:
    input:
        metrics=anonymisation_metrics_files(),
    output:
        report(
            f"{FIGURES_DIR}/privacy_utility_anonymisation.png",
            caption="../report/anonymisation_figure.rst",
            category=REPORT_ANON,
            labels={"result": "0 privacy vs utility, every safeguard"},
        ),
    log:
        log_path("anonymisation_privacy_utility"),
    benchmark:
        bench_path("anonymisation_privacy_utility")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        nonperson=HEADLINE["nonperson"],
        person=[e for e in PERSON_PANELS if e in ANON_EVALUATIONS],
    shell:
        script("privacy_utility_plot.py") + " --metrics {input.metrics:q}"
        " --nonperson {params.nonperson} --person {params.person} --out {output:q} > {log} 2>&1"

# Stage: evaluate (REFERENCE "Evaluation and tables"). Every trained model embeds every
# evaluation set once; the embeddings are cached, so metrics with index exclusion on and off
# (and any later evaluation of the same images) never run a model again. A model embeds in
# two jobs: the sets read from the prepared data, and the sets a detection model cuts (the
# clothes probes), so that a detector or SAM edit re-embeds only the latter. Metrics are
# pytorch-metric-learning's MAP and MAP@R (k = max bin count, FAISS on cosine similarity);
# the person re-ID sets also get the re-ID protocol (CMC, mAP) and a pair ROC. Each metric
# is computed for every attacker (plain search, k-reciprocal re-ranking, query expansion),
# and each metrics file gets a per-query evidence file (top-k references per query).

import json
import shlex

from overlearning.workflow.plans import (
    DATA_SETS,
    DERIVED_SETS,
    EvaluationPlan,
    evidence_file,
    evidence_files,
    plan_inputs,
    provenance_files,
)


include: "helpers/evaluate.smk"


EVAL = config["evaluation"]
EVAL_PLAN = EvaluationPlan.from_config(config, PERSON_SETS)
EVAL_PERSON_SETS = EVAL_PLAN.person_sets
EVAL_PROBES = EVAL_PLAN.query_probes
EXCLUSION_SETS = EVAL_PLAN.exclusion_sets
# Embedding set -> its images; evaluation -> query and reference parts (plans.py).
EMBEDDING_SOURCES = EVAL_PLAN.embedding_sources
EVALUATIONS = EVAL_PLAN.evaluations


wildcard_constraints:
    embedding_set="|".join(EMBEDDING_SOURCES),
    evaluation="|".join(EVALUATIONS),
    exclusion="none|excluded",


embedding_path = EVAL_PLAN.embedding_path
exclusion_json = EVAL_PLAN.exclusion_json
model_files = EVAL_PLAN.model_files
metrics_path = EVAL_PLAN.metrics_path
evaluation_available = EVAL_PLAN.evaluation_available
setting_metrics_jobs = EVAL_PLAN.setting_metrics_jobs


# Embed the evaluation sets read from the prepared data with one trained model, once
# (the model loads once per job); the cached embeddings serve every metric with and
# without exclusion.
rule embed:
    input:
        unpack(lambda wildcards: EVAL_PLAN.embed_inputs(wildcards.setting, DATA_SETS)),
    output:
        EVAL_PLAN.embedding_files("{setting}", DATA_SETS),
    log:
        log_path("embed", "{setting}"),
    benchmark:
        bench_path("embed", "{setting}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
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
        sets=lambda wildcards: embed_flags(EVAL_PLAN.embed_sets(wildcards.setting, DATA_SETS)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
        device=COMPUTE_DEVICE,
    shell:
        script("embed.py") + " --device {params.device} --rule embed"
        " --model-dir {params.model_dir:q} --trunk {params.trunk:q}"
        " --embedding-dim {params.dim} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Embed the evaluation sets a detection model cuts (each person set's clothes probe)
# with one trained model: their own job, so that a detector or SAM edit re-embeds
# these few images and not the model's whole evaluation.
rule embed_derived:
    input:
        unpack(lambda wildcards: EVAL_PLAN.embed_inputs(wildcards.setting, DERIVED_SETS)),
    output:
        EVAL_PLAN.embedding_files("{setting}", DERIVED_SETS),
    log:
        log_path("embed_derived", "{setting}"),
    benchmark:
        bench_path("embed_derived", "{setting}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
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
        sets=lambda wildcards: embed_flags(EVAL_PLAN.embed_sets(wildcards.setting, DERIVED_SETS)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
        device=COMPUTE_DEVICE,
    shell:
        script("embed.py") + " --device {params.device} --rule embed_derived"
        " --model-dir {params.model_dir:q} --trunk {params.trunk:q}"
        " --embedding-dim {params.dim} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Embed the data's evaluation sets with a pretrained trunk as downloaded (a baseline row).
rule embed_pretrained:
    input:
        **EVAL_PLAN.source_inputs(DATA_SETS),
        weights=lambda wildcards: model_manifest(PRETRAINED[wildcards.setting]),
    output:
        EVAL_PLAN.embedding_files("{setting}", DATA_SETS),
    log:
        log_path("embed_pretrained", "{setting}"),
    benchmark:
        bench_path("embed_pretrained", "{setting}")
    wildcard_constraints:
        setting="|".join(PRETRAINED) or "$^",
    conda:
        conda_for("gpu")
    container:
        container_for("gpu")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
    params:
        key=lambda wildcards: PRETRAINED[wildcards.setting],
        trunk=pretrained_trunk_json,
        cache=weights_cache,
        sets=lambda wildcards: embed_flags(EVAL_PLAN.embed_sets(wildcards.setting, DATA_SETS)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
        device=COMPUTE_DEVICE,
    shell:
        script("embed.py") + " --device {params.device} --rule embed_pretrained"
        " --pretrained {params.key} --cache {params.cache:q}"
        " --trunk {params.trunk:q} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Embed the clothes probes with a pretrained trunk as downloaded (apart, as for a
# trained model).
rule embed_derived_pretrained:
    input:
        **EVAL_PLAN.source_inputs(DERIVED_SETS),
        weights=lambda wildcards: model_manifest(PRETRAINED[wildcards.setting]),
    output:
        EVAL_PLAN.embedding_files("{setting}", DERIVED_SETS),
    log:
        log_path("embed_derived_pretrained", "{setting}"),
    benchmark:
        bench_path("embed_derived_pretrained", "{setting}")
    wildcard_constraints:
        setting="|".join(PRETRAINED) or "$^",
    conda:
        conda_for("gpu")
    container:
        container_for("gpu")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
    params:
        key=lambda wildcards: PRETRAINED[wildcards.setting],
        trunk=pretrained_trunk_json,
        cache=weights_cache,
        sets=lambda wildcards: embed_flags(EVAL_PLAN.embed_sets(wildcards.setting, DERIVED_SETS)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
        device=COMPUTE_DEVICE,
    shell:
        script("embed.py") + " --device {params.device} --rule embed_derived_pretrained"
        " --pretrained {params.key} --cache {params.cache:q}"
        " --trunk {params.trunk:q} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Score one model on every evaluation (all its embedding jobs' sets), with the index-exclusion lists applied and not.
rule metrics:
    input:
        unpack(lambda wildcards: plan_inputs(setting_metrics_jobs(wildcards.setting))),
    output:
        metrics=[job["out"] for job in setting_metrics_jobs("{setting}")],
        provenance=provenance_files(setting_metrics_jobs("{setting}")),
        evidence=evidence_files(setting_metrics_jobs("{setting}")),
    log:
        log_path("metrics", "{setting}"),
    benchmark:
        bench_path("metrics", "{setting}")
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("metrics")
    resources:
        mem_mb=mem_for("metrics"),
        runtime=runtime_for("metrics"),
    params:
        # The job's own files and labels only: nothing else in the config reruns it.
        plan=lambda wildcards: json.dumps(setting_metrics_jobs(wildcards.setting)),
        knn=config["evaluation"]["knn"],
        attackers=attacker_settings(),
        top_k=EVAL["evidence_top_k"],
    shell:
        script("compute_metrics.py") + " --plan {params.plan:q} --threads {threads}"
        " --knn {params.knn} --attackers {params.attackers:q} --top-k {params.top_k}"
        " > {log} 2>&1"

# Stage: evaluate (REFERENCE "Evaluation and tables"). Every trained model embeds every
# evaluation set once; the embeddings are cached, so metrics with index exclusion on and off
# (and any later evaluation of the same images) never run a model again. Metrics are
# pytorch-metric-learning's MAP and MAP@R (k = max bin count, FAISS on cosine similarity);
# the person re-ID sets also get the re-ID protocol (CMC, mAP) and a pair ROC.

import json
import shlex

from overlearning.workflow.plans import EvaluationPlan, plan_inputs, provenance_files

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


def eval_trunk_json(wildcards):
    """The architecture of the setting's trunk (config models.<trunk>): all of it builds the model."""
    trunk = config["training"]["settings"][wildcards.setting]["trunk"]
    return json.dumps(config["models"][trunk], sort_keys=True)


def embed_set_flag(out, kind, source, category, delta):
    """One --set of embed.py: where to write, what kind of set, its source, person category,
    the anonymised delta pack read over it (- for none)."""
    return (
        f"--set {shlex.quote(out)} {kind} {shlex.quote(source)} "
        f"{'-' if category is None else category} {shlex.quote(delta)}"
    )


def embed_flags(sets):
    return " ".join(embed_set_flag(*s) for s in sets)


def all_metrics_files():
    """Every metrics file, in table order: settings, then exclusion, then evaluations."""
    return EVAL_PLAN.metrics_files(EVALUATED)


def evaluation_targets():
    return all_metrics_files()


# Embed every evaluation set with one trained model, once (the model loads once per job);
# the cached embeddings serve every metric with and without exclusion.
rule embed:
    input:
        unpack(lambda wildcards: EVAL_PLAN.embed_inputs(wildcards.setting)),
    output:
        [embedding_path("{setting}", name) for name in EMBEDDING_SOURCES],
    log:
        log_path("embed", "{setting}"),
    benchmark:
        bench_path("embed", "{setting}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
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
        sets=lambda wildcards: embed_flags(EVAL_PLAN.embed_sets(wildcards.setting)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
    shell:
        script("embed.py") + " --model-dir {params.model_dir:q} --trunk {params.trunk:q}"
        " --embedding-dim {params.dim} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Embed every evaluation set with a pretrained trunk as downloaded (a baseline row).
rule embed_pretrained:
    input:
        **EVAL_PLAN.source_inputs(),
        manifest=f"{WEIGHTS}/manifest.json",
        trunk=lambda wildcards: f"{WEIGHTS}/{PRETRAINED[wildcards.setting]}/trunk.safetensors",
    output:
        [embedding_path("{setting}", name) for name in EMBEDDING_SOURCES],
    log:
        log_path("embed_pretrained", "{setting}"),
    benchmark:
        bench_path("embed_pretrained", "{setting}")
    wildcard_constraints:
        setting="|".join(PRETRAINED) or "$^",
    container:
        container_for("gpu")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
    params:
        key=lambda wildcards: PRETRAINED[wildcards.setting],
        trunk=lambda wildcards: json.dumps(
            config["models"][PRETRAINED[wildcards.setting]], sort_keys=True
        ),
        cache=WEIGHTS,
        sets=lambda wildcards: embed_flags(EVAL_PLAN.embed_sets(wildcards.setting)),
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
    shell:
        script("embed.py") + " --pretrained {params.key} --cache {params.cache:q}"
        " --trunk {params.trunk:q} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Score one model on every evaluation, with the index-exclusion lists applied and not.
rule metrics:
    input:
        unpack(lambda wildcards: plan_inputs(setting_metrics_jobs(wildcards.setting))),
    output:
        metrics=[job["out"] for job in setting_metrics_jobs("{setting}")],
        provenance=provenance_files(setting_metrics_jobs("{setting}")),
    log:
        log_path("metrics", "{setting}"),
    benchmark:
        bench_path("metrics", "{setting}")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        # The job's own files and labels only: nothing else in the config reruns it.
        plan=lambda wildcards: json.dumps(setting_metrics_jobs(wildcards.setting)),
        knn=config["evaluation"]["knn"],
    shell:
        script("compute_metrics.py") + " --plan {params.plan:q} --threads {threads}"
        " --knn {params.knn} > {log} 2>&1"

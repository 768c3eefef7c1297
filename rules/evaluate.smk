# Stage: evaluate (REFERENCE "Evaluation and tables"). Every trained model embeds every
# evaluation set once; the embeddings are cached, so metrics with index exclusion on and off
# (and any later evaluation of the same images) never run a model again. Metrics are
# pytorch-metric-learning's MAP and MAP@R (k = max bin count, FAISS on cosine similarity);
# the person re-ID sets also get the re-ID protocol (CMC, mAP) and a pair ROC.

import json
import shlex

EVAL = config["evaluation"]
EVAL_PERSON_SETS = list(EVAL["person_sets"])
EVAL_PROBES = PROBES + ["clothes"]
EXCLUSION_SETS = set(config["detection"]["sets"])
# The resolved configuration, for the provenance file beside every metrics file.
EVAL_CONFIG_JSON = json.dumps(config, sort_keys=True, default=str)

# Embedding set -> its images: a VIS/OVIS split (crop index + crop folder) or a person folder.
EMBEDDING_SOURCES = {
    "vis_test": {
        "kind": "crops",
        "source": f"{DATA}/vis/test",
        "images": f"{DATA}/vis/test/foregroundImages_cropped",
        "index": f"{DATA}/vis/test/fg_instances_cropped.json",
        "category": config["preparation"]["vis_person_category"],
    },
    "ovis_test": {
        "kind": "crops",
        "source": f"{DATA}/ovis/test",
        "images": f"{DATA}/ovis/test/foregroundImages_cropped",
        "index": f"{DATA}/ovis/test/fg_instances_cropped.json",
        "category": config["preparation"]["ovis_person_category"],
    },
}
for _ps in EVAL_PERSON_SETS:
    _folders = {"query": "foreground_query", "gallery": "foregroundImages_cropped"}
    _folders.update({f"probe_{p}": f"probes/{p}" for p in EVAL_PROBES})
    for _name, _folder in _folders.items():
        EMBEDDING_SOURCES[f"{_ps}_{_name}"] = {
            "kind": "folder",
            "source": f"{person_root(_ps)}/{_folder}",
            "images": f"{person_root(_ps)}/{_folder}",
        }

# Evaluation -> queries (embedding set, subset) and reference parts (embedding set, subset,
# the exclusion set whose JSON removes items of that part from the index, or None).
# OVIS distractors have no exclusion list: they are never put through detection.
EVALUATIONS = {
    # Non-person retrieval: test non-persons find each other among OVIS distractors.
    "nonperson": {
        "query": ("vis_test", "nonpersons"),
        "references": [("vis_test", "nonpersons", "vis_test"), ("ovis_test", "all", None)],
        "reid": False,
    },
    # Person queries: test persons against all test crops (persons included) + OVIS.
    "person": {
        "query": ("vis_test", "persons"),
        "references": [("vis_test", "all", "vis_test"), ("ovis_test", "all", None)],
        "reid": False,
    },
}
for _ps in EVAL_PERSON_SETS:
    # Person re-ID: masked queries (and partial-person probes) against the masked gallery.
    for _query, _name in [("query", _ps)] + [(f"probe_{p}", f"{_ps}_probe_{p}") for p in EVAL_PROBES]:
        EVALUATIONS[_name] = {
            "query": (f"{_ps}_{_query}", "all"),
            "references": [(f"{_ps}_gallery", "all", _ps)],
            "reid": True,
        }

wildcard_constraints:
    embedding_set="|".join(EMBEDDING_SOURCES),
    evaluation="|".join(EVALUATIONS),
    exclusion="none|excluded",


def embedding_path(setting, embedding_set):
    return f"{RESULTS}/embeddings/{setting}/{embedding_set}.npz"


def exclusion_json(exclusion_set):
    return f"{RESULTS}/exclusion/{exclusion_set}.json"


def model_files(setting):
    return {name: f"{RESULTS}/models/{setting}/{name}.safetensors" for name in ("trunk", "embedder")}


def eval_trunk_json(wildcards):
    trunk = config["training"]["settings"][wildcards.setting]["trunk"]
    return json.dumps(config["models"][trunk], sort_keys=True)


def embed_set_flag(out, kind, source, category):
    """One --set of embed.py: where to write, what kind of set, its source, person category."""
    return (f"--set {shlex.quote(out)} {kind} {shlex.quote(source)} "
            f"{'-' if category is None else category}")


def embed_flags(wildcards):
    return " ".join(
        embed_set_flag(embedding_path(wildcards.setting, name), s["kind"], s["source"],
                       s.get("category"))
        for name, s in EMBEDDING_SOURCES.items()
    )


def embed_inputs(wildcards):
    files = dict(model_files(wildcards.setting))
    files["images"] = sorted({s["images"] for s in EMBEDDING_SOURCES.values()})
    files["indexes"] = sorted({s["index"] for s in EMBEDDING_SOURCES.values() if "index" in s})
    return files


def reference_parts(setting, evaluation, exclusion):
    """(npz, subset, exclusion JSON or None) per reference part of this evaluation."""
    spec = EVALUATIONS[evaluation]
    return [
        (embedding_path(setting, name), subset,
         exclusion_json(excl) if excl and exclusion == "excluded" else None)
        for name, subset, excl in spec["references"]
    ]


def metrics_job(setting, evaluation, exclusion):
    """One entry of compute_metrics.py's plan."""
    name, subset = EVALUATIONS[evaluation]["query"]
    return {
        "query": [embedding_path(setting, name), subset],
        "references": [[npz, sub, excl or "-"]
                       for npz, sub, excl in reference_parts(setting, evaluation, exclusion)],
        "reid": EVALUATIONS[evaluation]["reid"],
        "setting": setting, "evaluation": evaluation, "exclusion": exclusion,
        "out": metrics_path(setting, evaluation, exclusion),
    }


def plan_inputs(jobs):
    """Every embedding and exclusion file a metrics plan reads."""
    npz = {job["query"][0] for job in jobs} | {ref[0] for job in jobs for ref in job["references"]}
    excl = {ref[2] for job in jobs for ref in job["references"] if ref[2] != "-"}
    return {"embeddings": sorted(npz), "exclusions": sorted(excl)}


def setting_metrics_jobs(setting):
    return [metrics_job(setting, evaluation, exclusion)
            for exclusion in EVAL["exclusion"]
            for evaluation in EVALUATIONS
            if evaluation_available(evaluation, exclusion)]


def evaluation_available(evaluation, exclusion):
    """Exclusion rows need every exclusion list of the evaluation to be produced."""
    needed = {e for _, _, e in EVALUATIONS[evaluation]["references"] if e}
    return exclusion == "none" or needed <= EXCLUSION_SETS


def metrics_path(setting, evaluation, exclusion):
    return f"{RESULTS}/metrics/{setting}/{evaluation}/{exclusion}.json"


def all_metrics_files():
    """Every metrics file, in table order: settings, then exclusion, then evaluations."""
    return [
        metrics_path(setting, evaluation, exclusion)
        for setting in EVALUATED
        for exclusion in EVAL["exclusion"]
        for evaluation in EVALUATIONS
        if evaluation_available(evaluation, exclusion)
    ]


def evaluation_targets():
    return all_metrics_files()


# Embed every evaluation set with one trained model, once (the model loads once per job);
# the cached embeddings serve every metric with and without exclusion.
rule embed:
    wildcard_constraints:
        setting="|".join(SETTINGS),
    input:
        unpack(embed_inputs),
    output:
        [embedding_path("{setting}", name) for name in EMBEDDING_SOURCES],
    params:
        model_dir=lambda wildcards: f"{RESULTS}/models/{wildcards.setting}",
        trunk=eval_trunk_json,
        dim=config["training"]["embedding_dim"],
        sets=embed_flags,
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
    log:
        log_path("embed", "{setting}"),
    benchmark:
        bench_path("embed", "{setting}")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
    container:
        container_for("gpu")
    shell:
        script("embed.py") + " --model-dir {params.model_dir:q} --trunk {params.trunk:q}"
        " --embedding-dim {params.dim} {params.sets} --batch-size {params.batch_size}"
        " --workers {params.workers} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


# Embed every evaluation set with a pretrained trunk as downloaded (a baseline row).
rule embed_pretrained:
    wildcard_constraints:
        setting="|".join(PRETRAINED) or "$^",
    input:
        manifest=f"{WEIGHTS}/manifest.json",
        trunk=lambda wildcards: f"{WEIGHTS}/{PRETRAINED[wildcards.setting]}/trunk.safetensors",
        images=sorted({s["images"] for s in EMBEDDING_SOURCES.values()}),
        indexes=sorted({s["index"] for s in EMBEDDING_SOURCES.values() if "index" in s}),
    output:
        [embedding_path("{setting}", name) for name in EMBEDDING_SOURCES],
    params:
        key=lambda wildcards: PRETRAINED[wildcards.setting],
        trunk=lambda wildcards: json.dumps(config["models"][PRETRAINED[wildcards.setting]],
                                           sort_keys=True),
        cache=WEIGHTS,
        sets=embed_flags,
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
    log:
        log_path("embed", "{setting}"),
    benchmark:
        bench_path("embed", "{setting}")
    threads: threads_for("embed")
    resources:
        mem_mb=mem_for("embed"),
        runtime=runtime_for("embed"),
    container:
        container_for("gpu")
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
        provenance=[job["out"].replace(".json", ".provenance.json")
                    for job in setting_metrics_jobs("{setting}")],
    params:
        plan=lambda wildcards: json.dumps(setting_metrics_jobs(wildcards.setting)),
        config=EVAL_CONFIG_JSON,
        knn=config["evaluation"]["knn"],
    log:
        log_path("metrics", "{setting}"),
    benchmark:
        bench_path("metrics", "{setting}")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container:
        container_for("cpu")
    shell:
        script("compute_metrics.py") + " --plan {params.plan:q} --threads {threads}"
        " --knn {params.knn} --config {params.config:q} > {log} 2>&1"

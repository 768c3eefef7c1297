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
# Each anonymised set is a full copy of the original image folder in which only the chosen
# images differ, so the evaluation embeds and indexes it like the original. Raw queries are
# then searched in the anonymised index with the evaluation's own scripts, and the results
# become extra rows (anon_<policy>_<variant>) beside "none" and "excluded" in one table.

import os

from overlearning.core.names import variant_name

ANON = config["anonymisation"]
ANON_ROOT = f"{DATA}/anon"
ANON_VARIANTS = [variant_name(m["method"], m["strength"]) for m in ANON["methods"]]
ANON_POLICIES = {"detected": "detected_persons", "gt": "gt_persons"}
ANON_PERSON_SETS = [ps for ps in config["evaluation"]["person_sets"] if ps in EVALUATIONS]
VIS_TEST = f"{DATA}/vis/test"

# Anonymised set -> what it is a copy of: the raw embedding set it replaces in the index,
# the exclusion set whose detector verdicts the deployment policy follows, how to embed it.
ANON_SOURCES = {}
for _policy in ANON_POLICIES:
    ANON_SOURCES[f"vis_test_{_policy}"] = {
        "policy": _policy, "raw": "vis_test", "detections": "vis_test", "kind": "crops",
        "folder": None, "category": config["preparation"]["vis_person_category"],
    }
    for _ps in ANON_PERSON_SETS:
        ANON_SOURCES[f"{_ps}_{_policy}"] = {
            "policy": _policy, "raw": f"{_ps}_gallery", "detections": _ps, "kind": "folder",
            "folder": "foregroundImages_cropped", "category": None,
        }
# The evaluations whose index can be anonymised: person and non-person retrieval on the VIS
# test split, and each person set's queries against its gallery.
ANON_EVALUATIONS = ["nonperson", "person"] + ANON_PERSON_SETS

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


def anon_dir(variant, anon_set):
    return f"{ANON_ROOT}/{variant}/{anon_set}"


def anon_embedding_path(setting, variant, anon_set):
    return f"{RESULTS}/embeddings/{setting}/anon/{variant}/{anon_set}.npz"


def anon_row(policy, variant):
    """The table row label (the metrics file's "exclusion") of one policy and variant."""
    return f"anon_{policy}_{variant}"


def anon_detections(wildcards, exclusion_set):
    return [exclusion_json(exclusion_set)] if wildcards.anon_policy == "detected" else []


def anon_selection_flags(wildcards, input):
    flags = f"--selection {ANON_POLICIES[wildcards.anon_policy]}"
    return flags + (f" --exclusion {input.exclusion[0]}" if input.exclusion else "")


# Anonymise the VIS test split's person crops (the index of the person/non-person queries).
rule anonymise_vis_test:
    input:
        images=f"{VIS_TEST}/foregroundImages_cropped",
        index=f"{VIS_TEST}/fg_instances_cropped.json",
        exclusion=lambda wildcards: anon_detections(wildcards, "vis_test"),
    output:
        directory(f"{ANON_ROOT}/{{anon_method}}_{{anon_strength}}/vis_test_{{anon_policy}}"),
    params:
        split=lambda wildcards, input: os.path.dirname(input.index),
        person_category=config["preparation"]["vis_person_category"],
        selection=anon_selection_flags,
        **ANON_PARAMS,
    log:
        log_path("anonymise_vis_test", "{anon_method}_{anon_strength}/{anon_policy}"),
    benchmark:
        bench_path("anonymise_vis_test", "{anon_method}_{anon_strength}/{anon_policy}")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container: container_for("cpu")
    shell:
        script("anonymise.py") + " {params.selection} --images {input.images}"
        " --split-dir {params.split} --person-category {params.person_category}"
        + ANON_FLAGS + " --out {output} > {log} 2>&1"


# Anonymise a person re-ID gallery (CUHK03-NP, Market-1501); the queries stay raw (the
# photo an investigator would search with).
rule anonymise_person_gallery:
    input:
        gallery=lambda wildcards: f"{person_root(wildcards.person_set)}/foregroundImages_cropped",
        exclusion=lambda wildcards: anon_detections(wildcards, wildcards.person_set),
    output:
        directory(f"{ANON_ROOT}/{{anon_method}}_{{anon_strength}}/{{person_set}}_{{anon_policy}}"),
    params:
        selection=anon_selection_flags,
        **ANON_PARAMS,
    log:
        log_path("anonymise_person_gallery",
                 "{anon_method}_{anon_strength}/{person_set}_{anon_policy}"),
    benchmark:
        bench_path("anonymise_person_gallery",
                   "{anon_method}_{anon_strength}/{person_set}_{anon_policy}")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container: container_for("cpu")
    shell:
        script("anonymise.py") + " {params.selection} --images {input.gallery}"
        + ANON_FLAGS + " --out {output} > {log} 2>&1"


# Anonymised sets made for every variant (deployment sets only where the detector ran).
ANON_SETS = [name for name, s in ANON_SOURCES.items()
             if s["policy"] != "detected" or s["detections"] in EXCLUSION_SETS]


def anon_embed_flags(wildcards):
    """A VIS copy is embedded as a split (crop index + crops), a gallery copy as a folder."""
    flags = []
    for variant in ANON_VARIANTS:
        for name in ANON_SETS:
            source = ANON_SOURCES[name]
            folder = anon_dir(variant, name)
            if source["folder"] is not None:
                folder = f"{folder}/{source['folder']}"
            flags.append(embed_set_flag(anon_embedding_path(wildcards.setting, variant, name),
                                        source["kind"], folder, source["category"]))
    return " ".join(flags)


# Embed every anonymised set with a trained model (the evaluation's embed script).
rule embed_anonymised:
    input:
        unpack(lambda wildcards: model_files(wildcards.setting)),
        images=[anon_dir(v, name) for v in ANON_VARIANTS for name in ANON_SETS],
    output:
        [anon_embedding_path("{setting}", v, name)
         for v in ANON_VARIANTS for name in ANON_SETS],
    params:
        model_dir=lambda wildcards: f"{RESULTS}/models/{wildcards.setting}",
        trunk=eval_trunk_json,
        dim=config["training"]["embedding_dim"],
        sets=anon_embed_flags,
        batch_size=EVAL["batch_size"],
        workers=EVAL["loader_workers"],
        precision=EVAL["precision"],
    log:
        log_path("embed_anonymised", "{setting}"),
    benchmark:
        bench_path("embed_anonymised", "{setting}")
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


def anon_available(evaluation, policy):
    """The deployment policy needs the detector's verdicts on every set it anonymises."""
    if policy != "detected":
        return True
    indexed = {name for name, _, _ in EVALUATIONS[evaluation]["references"]}
    return all(s["detections"] in EXCLUSION_SETS for s in ANON_SOURCES.values()
               if s["policy"] == policy and s["raw"] in indexed)


def anon_metrics_job(setting, evaluation, policy, variant):
    """One plan entry: the evaluation with the anonymisable reference sets swapped for their
    copies; a copy of the query set is marked so each query's own copy counts as itself."""
    spec = EVALUATIONS[evaluation]
    query_set, query_subset = spec["query"]
    by_raw = {s["raw"]: name for name, s in ANON_SOURCES.items() if s["policy"] == policy}
    references, copies = [], []
    for name, subset, _ in spec["references"]:
        if name not in by_raw:  # OVIS distractors: never anonymised, never excluded
            references.append([embedding_path(setting, name), subset, "-"])
            continue
        anon_set = by_raw[name]
        npz = anon_embedding_path(setting, variant, anon_set)
        excl = f"{anon_dir(variant, anon_set)}/exclusion.json" if policy == "detected" else "-"
        references.append([npz, subset, excl])
        if name == query_set:
            copies.append(npz)
    row = anon_row(policy, variant)
    return {
        "query": [embedding_path(setting, query_set), query_subset],
        "references": references, "query_copies": copies, "reid": spec["reid"],
        "setting": setting, "evaluation": evaluation, "exclusion": row,
        "out": metrics_path(setting, evaluation, row),
    }


def setting_anon_jobs(setting):
    return [anon_metrics_job(setting, evaluation, policy, variant)
            for variant in ANON_VARIANTS
            for policy in ANON_POLICIES
            for evaluation in ANON_EVALUATIONS
            if anon_available(evaluation, policy)]


def anon_plan_inputs(wildcards):
    jobs = setting_anon_jobs(wildcards.setting)
    files = plan_inputs(jobs)
    # The deployment sets' exclusion.json lives inside the anonymised set's folder.
    files["sets"] = sorted({os.path.dirname(ref[2]) for job in jobs
                            for ref in job["references"] if ref[2] != "-"})
    files["exclusions"] = []
    return files


# Raw queries against the anonymised index: person re-ID and non-person retrieval per
# trained model, policy and variant (non-person numbers change only where the detector
# anonymised a non-person).
rule metrics_anonymised:
    input:
        unpack(anon_plan_inputs),
    output:
        metrics=[job["out"] for job in setting_anon_jobs("{setting}")],
        provenance=[job["out"].replace(".json", ".provenance.json")
                    for job in setting_anon_jobs("{setting}")],
    params:
        plan=lambda wildcards: json.dumps(setting_anon_jobs(wildcards.setting)),
        config=EVAL_CONFIG_JSON,
        knn=config["evaluation"]["knn"],
    log:
        log_path("metrics_anonymised", "{setting}"),
    benchmark:
        bench_path("metrics_anonymised", "{setting}")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container:
        container_for("cpu")
    shell:
        script("compute_metrics.py") + " --plan {params.plan:q} --threads {threads}"
        " --knn {params.knn} --config {params.config:q} > {log} 2>&1"


def anonymisation_metrics_files():
    """Rows of the comparison table in order: per training setting, no safeguard and index
    exclusion (the evaluation's files), then each variant's deployment and oracle rows."""
    files = []
    for setting in SETTINGS:
        for exclusion in EVAL["exclusion"]:
            files += [metrics_path(setting, e, exclusion) for e in ANON_EVALUATIONS
                      if evaluation_available(e, exclusion)]
        for variant in ANON_VARIANTS:
            for policy in ANON_POLICIES:
                files += [metrics_path(setting, e, anon_row(policy, variant))
                          for e in ANON_EVALUATIONS if anon_available(e, policy)]
    return files


ANON_TABLES = f"{RESULTS}/tables/anonymisation"
ANON_TABLE_STEMS = ["main", "reid", "details", "headline"]


# All three safeguards in one table (the evaluation's table script, unchanged): rows per
# training setting -- none, excluded, anon_detected_<variant>, anon_gt_<variant>.
rule anonymisation_tables:
    input:
        metrics=anonymisation_metrics_files(),
    output:
        tables=[f"{ANON_TABLES}/{stem}.{ext}" for stem in ("main", "reid") for ext in ("csv", "md", "tex")],
        details=f"{ANON_TABLES}/details.csv",
        headline=f"{ANON_TABLES}/headline.json",
        headline_md=f"{ANON_TABLES}/headline.md",
        provenance=[f"{ANON_TABLES}/{stem}.provenance.json" for stem in ANON_TABLE_STEMS],
    params:
        out_dir=ANON_TABLES,
        config=EVAL_CONFIG_JSON,
        **HEADLINE,
    log:
        log_path("anonymisation_tables"),
    benchmark:
        bench_path("anonymisation_tables")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container:
        container_for("cpu")
    shell:
        script("make_tables.py") + " --metrics {input.metrics:q} --baseline {params.baseline}"
        " --safeguarded {params.safeguarded} --nonperson {params.nonperson}"
        " --person {params.person} --config {params.config:q} --out-dir {params.out_dir:q}"
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
        main=report(f"{ANON_TABLES}/main.html", caption="../report/anonymisation_table.rst",
                    category=REPORT_ANON, labels={"result": "1 MAP@R per safeguard"}),
        reid=report(f"{ANON_TABLES}/reid.html", caption="../report/anonymisation_reid.rst",
                    category=REPORT_ANON, labels={"result": "2 re-ID protocol per safeguard"}),
        details=report(f"{ANON_TABLES}/details.html", caption="../report/details_table.rst",
                       category=REPORT_ANON, labels={"result": "3 every metric"}),
        headline=report(f"{ANON_TABLES}/headline.html",
                        caption="../report/anonymisation_headline.rst",
                        category=REPORT_ANON, labels={"result": "4 headline numbers"}),
    log:
        log_path("anonymisation_tables_html"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container:
        container_for("cpu")
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
        report(f"{FIGURES_DIR}/privacy_utility_anonymisation.png",
               caption="../report/anonymisation_figure.rst", category=REPORT_ANON,
               labels={"result": "0 privacy vs utility, every safeguard"}),
    params:
        nonperson=HEADLINE["nonperson"],
        person=[e for e in PERSON_PANELS if e in ANON_EVALUATIONS],
    log:
        log_path("anonymisation_privacy_utility"),
    benchmark:
        bench_path("anonymisation_privacy_utility")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    container:
        container_for("cpu")
    shell:
        script("privacy_utility_plot.py") + " --metrics {input.metrics:q}"
        " --nonperson {params.nonperson} --person {params.person} --out {output:q} > {log} 2>&1"


def anonymised_sets():
    """Every anonymised image set (deployment sets only where the detector ran on them)."""
    return [anon_dir(v, name) for v in ANON_VARIANTS for name in ANON_SETS]


def anonymisation_targets():
    tables = [f"{ANON_TABLES}/{stem}.{ext}" for stem in ("main", "reid") for ext in ("csv", "md", "tex")]
    tables += [f"{ANON_TABLES}/details.csv", f"{ANON_TABLES}/headline.json",
               f"{ANON_TABLES}/headline.md"]
    tables += [f"{ANON_TABLES}/{stem}.html" for stem in ANON_TABLE_STEMS]
    return (anonymised_sets() + anonymisation_metrics_files() + tables
            + [f"{FIGURES_DIR}/privacy_utility_anonymisation.png"])

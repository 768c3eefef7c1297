# Stage: training, one run per loss setting (REFERENCE "Training"). Each setting fine-tunes
# the pretrained trunk plus a linear embedder with MultiSimilarity loss on the YouTube-VIS
# train crops: `ms` without persons (the baseline whose person re-identification emerges
# anyway), `confusion` and `center` with persons and a term that de-identifies them, and
# torchvision twins of the first two for the AttnLRP heat maps. Optionally the loss
# parameters are first searched with Optuna against the real validation metrics.

import json

TUNED_SETTINGS = list(config["tuning"]["settings"])
# The training.* values every run reads (not the per-setting blocks, nor `processes` and
# `use_tuned`, which the rule itself turns into a flag and an input).
TRAINING_SHARED = picked(
    config["training"],
    "embedding_dim",
    "batch_size",
    "m_per_class",
    "epochs",
    "weight_decay",
    "num_workers",
    "amp",
    "deterministic",
    "ms_loss",
    "augment",
    "compile",
)
# tuning.* without the list of settings to tune (adding one must not retune the others).
TUNING_SHARED = picked(config["tuning"], "trials", "epochs_per_trial", "seed", "space")


def training_targets():
    models = expand(
        f"{RESULTS}/models/{{setting}}/{{name}}",
        setting=SETTINGS,
        name=[
            "trunk.safetensors",
            "embedder.safetensors",
            "metrics.csv",
            "curve.png",
            "params.json",
        ],
    )
    tuning = expand(
        f"{RESULTS}/tuning/{{setting}}/{{name}}",
        setting=TUNED_SETTINGS,
        name=["study.sqlite", "trials.csv", "best.json"],
    )
    views = expand(f"{RESULTS}/models/{{setting}}/metrics.html", setting=SETTINGS)
    views += expand(
        f"{RESULTS}/tuning/{{setting}}/{{name}}",
        setting=TUNED_SETTINGS,
        name=["trials.html", "trials.png", "best.html"],
    )
    return models + tuning + views


def trunk_of(wildcards):
    return config["training"]["settings"][wildcards.setting]["trunk"]


def setting_json(wildcards):
    return json.dumps(config["training"]["settings"][wildcards.setting], sort_keys=True)


def trunk_json(wildcards):
    return json.dumps(config["models"][trunk_of(wildcards)], sort_keys=True)


def cached_trunk(wildcards):
    return f"{WEIGHTS}/{trunk_of(wildcards)}/trunk.safetensors"


def tuned_params(wildcards):
    """The tuning result that replaces the config's values (training.use_tuned)."""
    if config["training"]["use_tuned"] and wildcards.setting in TUNED_SETTINGS:
        return f"{RESULTS}/tuning/{wildcards.setting}/best.json"
    return []


# Fine-tune trunk + embedder for one setting, validating every epoch; a job killed by the
# cluster resumes from the setting's checkpoint (kept outside the declared outputs).
rule train:
    input:
        manifest=f"{WEIGHTS}/manifest.json",
        trunk=cached_trunk,
        train=f"{DATA}/vis/train/fg_instances_cropped.json",
        valid=f"{DATA}/vis/valid/fg_instances_cropped.json",
        train_crops=f"{DATA}/vis/train/foregroundImages_cropped.zip",
        valid_crops=f"{DATA}/vis/valid/foregroundImages_cropped.zip",
        tuned=tuned_params,
    output:
        trunk=f"{RESULTS}/models/{{setting}}/trunk.safetensors",
        embedder=f"{RESULTS}/models/{{setting}}/embedder.safetensors",
        metrics=f"{RESULTS}/models/{{setting}}/metrics.csv",
        curve=report(
            f"{RESULTS}/models/{{setting}}/curve.png",
            caption="../report/training_curve.rst",
            category=REPORT_TRAINING,
            subcategory="{setting}",
            labels={"setting": "{setting}", "result": "curve"},
        ),
        params=f"{RESULTS}/models/{{setting}}/params.json",
    log:
        log_path("train", "{setting}"),
    benchmark:
        bench_path("train", "{setting}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
    container:
        container_for("gpu")
    threads: threads_for("train")
    resources:
        mem_mb=mem_for("train"),
        runtime=runtime_for("train"),
    params:
        setting=setting_json,
        training=TRAINING_SHARED,
        trunk=trunk_json,
        cache=WEIGHTS,
        train_dir=f"{DATA}/vis/train",
        valid_dir=f"{DATA}/vis/valid",
        person_category=config["preparation"]["vis_person_category"],
        seed=config["seed"],
        processes=config["training"]["processes"],
        out=f"{RESULTS}/models/{{setting}}",
        checkpoints=f"{RESULTS}/checkpoints/{{setting}}",
    shell:
        script("train.py") + " --setting {wildcards.setting} --params {params.setting:q}"
        " --training {params.training:q} --trunk {params.trunk:q} --cache {params.cache:q}"
        " --train-dir {params.train_dir:q} --valid-dir {params.valid_dir:q}"
        " --person-category {params.person_category} --seed {params.seed}"
        " --threads {threads} --processes {params.processes} --out {params.out:q}"
        " --checkpoints {params.checkpoints:q} --tuned {input.tuned} > {log} 2>&1"


# Search the setting's learning rates and loss parameters (Optuna TPE, two objectives:
# non-person MAP@R up, person-query MAP@R down); the study resumes after an interruption.
rule tune:
    input:
        manifest=f"{WEIGHTS}/manifest.json",
        trunk=cached_trunk,
        train=f"{DATA}/vis/train/fg_instances_cropped.json",
        valid=f"{DATA}/vis/valid/fg_instances_cropped.json",
        train_crops=f"{DATA}/vis/train/foregroundImages_cropped.zip",
        valid_crops=f"{DATA}/vis/valid/foregroundImages_cropped.zip",
    output:
        study=f"{RESULTS}/tuning/{{setting}}/study.sqlite",
        trials=f"{RESULTS}/tuning/{{setting}}/trials.csv",
        best=f"{RESULTS}/tuning/{{setting}}/best.json",
    log:
        log_path("tune", "{setting}"),
    benchmark:
        bench_path("tune", "{setting}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
    container:
        container_for("gpu")
    threads: threads_for("tune")
    resources:
        mem_mb=mem_for("tune"),
        runtime=runtime_for("tune"),
    params:
        setting=setting_json,
        training=TRAINING_SHARED,
        tuning=TUNING_SHARED,
        trunk=trunk_json,
        cache=WEIGHTS,
        train_dir=f"{DATA}/vis/train",
        valid_dir=f"{DATA}/vis/valid",
        person_category=config["preparation"]["vis_person_category"],
        seed=config["seed"],
        work_dir=f"{RESULTS}/checkpoints/{{setting}}/tuning",
        out=f"{RESULTS}/tuning/{{setting}}",
    shell:
        script("tune.py") + " --setting {wildcards.setting} --params {params.setting:q}"
        " --training {params.training:q} --tuning {params.tuning:q} --trunk {params.trunk:q}"
        " --cache {params.cache:q} --train-dir {params.train_dir:q}"
        " --valid-dir {params.valid_dir:q} --person-category {params.person_category}"
        " --seed {params.seed} --threads {threads} --work-dir {params.work_dir:q}"
        " --out {params.out:q} > {log} 2>&1"


# Seconds of work each: run beside Snakemake, never as a cluster job.
# The per-epoch training record as an HTML page for the report.
rule training_table:
    input:
        f"{RESULTS}/models/{{setting}}/metrics.csv",
    output:
        report(
            f"{RESULTS}/models/{{setting}}/metrics.html",
            caption="../report/training_table.rst",
            category=REPORT_TRAINING,
            subcategory="{setting}",
            labels={"setting": "{setting}", "result": "per epoch"},
        ),
    log:
        log_path("training_table", "{setting}"),
    benchmark:
        bench_path("training_table", "{setting}")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    shell:
        script("render_tables.py") + " --csv {input:q} {output:q}"
        " 'Training of {wildcards.setting}, one row per epoch' > {log} 2>&1"


# Every tuning trial as a table and a figure, and the chosen parameters, for the report.
rule tuning_report:
    input:
        trials=f"{RESULTS}/tuning/{{setting}}/trials.csv",
        best=f"{RESULTS}/tuning/{{setting}}/best.json",
    output:
        table=report(
            f"{RESULTS}/tuning/{{setting}}/trials.html",
            caption="../report/tuning_trials.rst",
            category=REPORT_TUNING,
            subcategory="{setting}",
            labels={"setting": "{setting}", "result": "2 trials"},
        ),
        figure=report(
            f"{RESULTS}/tuning/{{setting}}/trials.png",
            caption="../report/tuning_figure.rst",
            category=REPORT_TUNING,
            subcategory="{setting}",
            labels={"setting": "{setting}", "result": "1 trials figure"},
        ),
        best=report(
            f"{RESULTS}/tuning/{{setting}}/best.html",
            caption="../report/tuning_best.rst",
            category=REPORT_TUNING,
            subcategory="{setting}",
            labels={"setting": "{setting}", "result": "3 chosen trial"},
        ),
    log:
        log_path("tuning_report", "{setting}"),
    benchmark:
        bench_path("tuning_report", "{setting}")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    shell:
        "(" + script("render_tables.py") + " --csv {input.trials:q} {output.table:q}"
        " 'Tuning trials of {wildcards.setting}'"
        " --json {input.best:q} {output.best:q} 'Chosen tuning trial of {wildcards.setting}'"
        " && " + script("tuning_plot.py") + " --trials {input.trials:q} --best {input.best:q}"
        " --setting {wildcards.setting} --out {output.figure:q}) > {log} 2>&1"

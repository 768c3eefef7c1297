# Stage: training, one run per loss setting (REFERENCE "Training"). Each setting fine-tunes
# the pretrained trunk plus a linear embedder with MultiSimilarity loss on the YouTube-VIS
# train crops: `ms` without persons (the baseline whose person re-identification emerges
# anyway), `confusion` and `center` with persons and a term that de-identifies them, and
# torchvision twins of the first two for the AttnLRP heat maps. Optionally the loss
# parameters are first searched with Optuna against the real validation metrics.

import json


include: "helpers/train.smk"


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
    "amp_fallback",
    "deterministic",
    "ms_loss",
    "augment",
    "compile",
)
# tuning.* a trial worker uses: not the list of settings to tune (adding one must not retune
# the others), nor the number of workers (adding one must not restart the others).
TUNING_SHARED = picked(config["tuning"], "trials", "epochs_per_trial", "seed", "space")
TUNING_WORKERS = [str(i) for i in range(config["tuning"]["workers"])]


# Fine-tune trunk + embedder for one setting, validating every epoch; a job killed by the
# cluster resumes from the setting's checkpoint (kept outside the declared outputs).
rule train:
    input:
        weights=trunk_weights,
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
    conda:
        conda_for("gpu")
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
        cache=weights_cache,
        train_dir=lambda wildcards, input: os.path.dirname(input.train),
        valid_dir=lambda wildcards, input: os.path.dirname(input.valid),
        person_category=config["preparation"]["vis_person_category"],
        seed=config["seed"],
        processes=config["training"]["processes"],
        out=f"{RESULTS}/models/{{setting}}",
        checkpoints=f"{RESULTS}/checkpoints/{{setting}}",
        device=COMPUTE_DEVICE,
    shell:
        script("train.py") + " --device {params.device} --rule train"
        " --setting {wildcards.setting} --params {params.setting:q}"
        " --training {params.training:q} --trunk {params.trunk:q} --cache {params.cache:q}"
        " --train-dir {params.train_dir:q} --valid-dir {params.valid_dir:q}"
        " --person-category {params.person_category} --seed {params.seed}"
        " --threads {threads} --processes {params.processes} --out {params.out:q}"
        " --checkpoints {params.checkpoints:q} --tuned {input.tuned} > {log} 2>&1"


# Search the setting's learning rates and loss parameters (Optuna TPE, two objectives:
# non-person MAP@R up, person-query MAP@R down): `tuning.workers` jobs, one GPU each, run
# the trials of one shared study (journal file storage on the shared file system); each
# trial checkpoints per epoch, and a killed worker's trial is resumed by its next job or,
# once its heartbeat is stale, by another worker (overlearning/train/tuning.py).
rule tune_worker:
    input:
        weights=trunk_weights,
        train=f"{DATA}/vis/train/fg_instances_cropped.json",
        valid=f"{DATA}/vis/valid/fg_instances_cropped.json",
        train_crops=f"{DATA}/vis/train/foregroundImages_cropped.zip",
        valid_crops=f"{DATA}/vis/valid/foregroundImages_cropped.zip",
    output:
        record=f"{RESULTS}/tuning/{{setting}}/workers/{{worker}}.json",
    log:
        log_path("tune_worker", "{setting}/{worker}"),
    benchmark:
        bench_path("tune_worker", "{setting}/{worker}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
        worker="[0-9]+",
    conda:
        conda_for("gpu")
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
        cache=weights_cache,
        train_dir=lambda wildcards, input: os.path.dirname(input.train),
        valid_dir=lambda wildcards, input: os.path.dirname(input.valid),
        person_category=config["preparation"]["vis_person_category"],
        seed=config["seed"],
        work_dir=f"{RESULTS}/checkpoints/{{setting}}/tuning",
        device=COMPUTE_DEVICE,
    shell:
        script("tune_worker.py") + " --device {params.device} --rule tune_worker"
        " --setting {wildcards.setting} --params {params.setting:q}"
        " --training {params.training:q} --tuning {params.tuning:q} --trunk {params.trunk:q}"
        " --cache {params.cache:q} --train-dir {params.train_dir:q}"
        " --valid-dir {params.valid_dir:q} --person-category {params.person_category}"
        " --seed {params.seed} --threads {threads} --work-dir {params.work_dir:q}"
        " --worker {wildcards.worker} --record {output.record:q} > {log} 2>&1"


# When every worker has stopped: check that the study has all its trials, choose the trial
# (the Pareto-optimal one with the largest non-person minus person MAP@R), write them out.
rule tune:
    input:
        records=expand(
            f"{RESULTS}/tuning/{{{{setting}}}}/workers/{{worker}}.json", worker=TUNING_WORKERS
        ),
    output:
        study=f"{RESULTS}/tuning/{{setting}}/study.journal",
        trials=f"{RESULTS}/tuning/{{setting}}/trials.csv",
        best=f"{RESULTS}/tuning/{{setting}}/best.json",
    log:
        log_path("tune", "{setting}"),
    benchmark:
        bench_path("tune", "{setting}")
    wildcard_constraints:
        setting="|".join(SETTINGS),
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        trials=config["tuning"]["trials"],
        out=lambda wildcards, output: os.path.dirname(output.best),
    shell:
        script("tune.py") + " --setting {wildcards.setting} --trials {params.trials}"
        " --records {input.records:q} --out {params.out:q} > {log} 2>&1"


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
    conda:
        conda_for("cpu")
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
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    shell:
        " && ".join(
            [
                script("render_tables.py") + " --csv {input.trials:q} {output.table:q}"
                " 'Tuning trials of {wildcards.setting}' --json {input.best:q} {output.best:q}"
                " 'Chosen tuning trial of {wildcards.setting}' > {log} 2>&1",
                script("tuning_plot.py") + " --trials {input.trials:q} --best {input.best:q}"
                " --setting {wildcards.setting} --out {output.figure:q} >> {log} 2>&1",
            ]
        )

# Stage: pretrained weights. The study fine-tunes a CLIP ViT-B/16 (timm) and, for the
# AttnLRP heat maps, torchvision's ViT-B/16; detection uses GroundingDINO and SAM. Each
# model of `models:` is fetched once by its own job, on the login node where the network
# is, into its own folder of the cache with its own checksum manifest; a compute job takes
# as input only the manifests of the models it uses and reads those folders with hub access
# switched off, so editing one model's entry reruns only the jobs that use that model.
# `weights.source: files` reads the same published files from a local folder
# (weights.files: an offline bundle, or the stand-ins of `make rehearse`). The demo
# (weights.source: random) writes tiny seeded random weights in the same layout instead.


localrules:
    model_weights,


# Every model's weights (`snakemake weights`: the login-node step before a cluster run;
# it runs no job of its own).
rule weights:
    input:
        [model_manifest(key) for key in config["models"]],


# One model's folder: its files, then its manifest (each file's sha256), renamed into
# place whole. Only this model's entry of `models:` is a param.
rule model_weights:
    output:
        manifest=model_manifest("{model}"),
    log:
        log_path("model_weights", "{model}"),
    benchmark:
        bench_path("model_weights", "{model}")
    wildcard_constraints:
        model="|".join(config["models"]),
    conda:
        conda_for("cpu")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        model=lambda wildcards: json.dumps(config["models"][wildcards.model], sort_keys=True),
        cache=lambda wildcards, output: weights_cache_of(output.manifest),
        source=config["weights"]["source"],
        files=lambda wildcards: (
            f" --files {config['weights']['files']}" if config["weights"].get("files") else ""
        ),
        seed=config["seed"],
    shell:
        script("weights.py") + " --key {wildcards.model} --model {params.model:q}"
        " --cache {params.cache:q} --source {params.source}{params.files} --seed {params.seed}"
        " > {log} 2>&1"

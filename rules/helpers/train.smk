# Functions of rules/train.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


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
        name=["study.journal", "trials.csv", "best.json"],
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


def trunk_weights(wildcards):
    """The setting's trunk folder in the weights cache (its manifest): no other model's."""
    return model_manifest(trunk_of(wildcards))


def tuned_params(wildcards):
    """The tuning result that replaces the config's values (training.use_tuned)."""
    if config["training"]["use_tuned"] and wildcards.setting in TUNED_SETTINGS:
        return f"{RESULTS}/tuning/{wildcards.setting}/best.json"
    return []

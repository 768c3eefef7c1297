# Stage: pretrained weights. The study fine-tunes a CLIP ViT-B/16 (timm) and, for the
# AttnLRP heat maps, torchvision's ViT-B/16; detection uses GroundingDINO and SAM. All of
# them are fetched once, on the login node where the network is, into one cache folder
# with a checksum manifest; every compute job reads that folder with hub access switched
# off. `weights.source: files` reads the same published files from a local folder
# (weights.files: an offline bundle, or the stand-ins of `make rehearse`). The demo
# (weights.source: random) writes tiny seeded random weights in the same layout instead.

import json

from overlearning.models.cache import trunk_keys

WEIGHT_TRUNKS = trunk_keys(config["models"])


localrules:
    weights,


def weights_targets():
    return [f"{WEIGHTS}/manifest.json"]


# Download (or generate) every model's weights; the manifest, written last, lists each
# file with its sha256.
rule weights:
    output:
        manifest=f"{WEIGHTS}/manifest.json",
        trunks=[f"{WEIGHTS}/{trunk}/trunk.safetensors" for trunk in WEIGHT_TRUNKS],
    log:
        log_path("weights"),
    benchmark:
        bench_path("weights")
    container:
        container_for("cpu")
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    params:
        models=json.dumps(config["models"], sort_keys=True),
        cache=WEIGHTS,
        source=config["weights"]["source"],
        files=lambda wildcards: (
            f" --files {config['weights']['files']}" if config["weights"].get("files") else ""
        ),
        seed=config["seed"],
    shell:
        script("weights.py") + " --models {params.models:q} --cache {params.cache:q}"
        " --source {params.source}{params.files} --seed {params.seed} > {log} 2>&1"

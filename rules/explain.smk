# Stage: explain (REFERENCE "Training": AttnLRP heat maps need torchvision's ViT). For a
# few person queries, AttnLRP (lxt + zennit) shows which pixels make a torchvision-ViT
# model match the query to its best same-identity gallery image: what the model
# re-identifies persons by, although it never trained on person identities.


include: "helpers/explain.smk"


EXPLAIN = config["explain"]
EXPLAIN_SET = EXPLAIN["person_set"]
EXPLAIN_QUERIES = f"{EXPLAIN_SET}_query"
EXPLAIN_GALLERY = f"{EXPLAIN_SET}_gallery"


# AttnLRP relevance of each query pixel for the query-match similarity, per model.
rule explain:
    input:
        unpack(explain_inputs),
    output:
        [
            report(
                path,
                caption="../report/explain.rst",
                category=REPORT_EXPLAIN,
                subcategory="{setting}",
                labels={"setting": "{setting}", "query": str(i)},
            )
            for i, path in enumerate(explain_outputs("{setting}"))
        ],
    log:
        log_path("explain", "{setting}"),
    benchmark:
        bench_path("explain", "{setting}")
    wildcard_constraints:
        setting="|".join(EXPLAIN["settings"]) or "$^",
    conda:
        conda_for("gpu")
    container:
        container_for("gpu")
    threads: threads_for("explain")
    resources:
        mem_mb=mem_for("explain"),
        runtime=runtime_for("explain"),
    params:
        model_dir=lambda wildcards: f"{RESULTS}/models/{wildcards.setting}",
        trunk=eval_trunk_json,
        dim=config["training"]["embedding_dim"],
        target=EXPLAIN["target"],
        gammas=" ".join(f"--gamma {conv} {linear}" for conv, linear in EXPLAIN["gammas"]),
        device=COMPUTE_DEVICE,
    shell:
        script("explain.py") + " --device {params.device} --rule explain"
        " --model-dir {params.model_dir:q} --trunk {params.trunk:q}"
        " --embedding-dim {params.dim} --queries {input.queries:q} --gallery {input.gallery:q}"
        " --query-root {input.query_images:q} --gallery-root {input.gallery_images:q}"
        " --target {params.target} {params.gammas} --threads {threads} --out {output:q} > {log} 2>&1"

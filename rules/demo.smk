# Stage: demo downloads -- stand-ins for the official dataset downloads.
#
# The demo runs the same graph as the paper on generated data. This rule writes small
# archives in the official shapes (YouTube-VIS 2021 train.zip, OVIS train.zip +
# annotations_train.json, CUHK03-NP and Market-1501 zips with MGCAM person masks) at the
# paths config datasets.*.archives names, so checksum checks, safe extraction and all the
# parsing code run on them exactly as on the real files (docs: overlearning/demo/downloads.py).

DEMO = config["demo"]


if DEMO["generate"]:

    # Generated downloads: seeded, byte-identical across runs; a local rule (it is quick
    # and stands in for a download, which happens on the login node).
    rule demo_downloads:
        output:
            demo_download_paths(),
        log:
            log_path("demo_downloads"),
        benchmark:
            bench_path("demo_downloads")
        localrule: True
        conda:
            conda_for("cpu")
        container:
            container_for("cpu")
        threads: threads_for("default")
        resources:
            mem_mb=mem_for("default"),
            runtime=runtime_for("default"),
        params:
            # The generator writes every archive under one folder: the outputs' common root.
            out=lambda wildcards, output: os.path.commonpath(list(output)),
            seed=config["seed"],
            vis_videos=DEMO["vis_videos"],
            vis_frames=DEMO["vis_frames"],
            ovis_videos=DEMO["ovis_videos"],
            ovis_frames=DEMO["ovis_frames"],
            persons=DEMO["persons"],
            cameras=DEMO["cameras"],
            images_per_camera=DEMO["images_per_camera"],
            image_size=" ".join(str(s) for s in DEMO["image_size"]),
            split=" ".join(str(c) for c in config["preparation"]["split"]),
            split_seed=config["preparation"]["split_seed"],
        shell:
            script("make_demo_downloads.py") + " --out {params.out} --seed {params.seed}"
            " --vis-videos {params.vis_videos} --vis-frames {params.vis_frames}"
            " --ovis-videos {params.ovis_videos} --ovis-frames {params.ovis_frames}"
            " --persons {params.persons} --cameras {params.cameras}"
            " --images-per-camera {params.images_per_camera}"
            " --image-size {params.image_size} --split {params.split}"
            " --split-seed {params.split_seed} --expect {output} > {log} 2>&1"

"""A GPU rule on a node where CUDA is not usable stops within a minute, with one line.

The local SLURM cluster of tests/slurm/cluster.sh has fake GPUs: SLURM hands a job a GPU
(CUDA_VISIBLE_DEVICES=0) that CUDA cannot use, exactly what a node without a driver, or an
image started without --nv, does to a real job. The checkout is the one tests/test_slurm.py
builds (the demo config on this cluster's site profile), with `compute.device: cuda`, as
the paper's config has it. One GPU rule (`clothes_probe`, whose inputs are the fewest) is
submitted through the real profile; its job must fail, as SLURM records it, within 60 s
of its start, and the rule's log must be the device guard's one line naming the host, the
visible devices, the driver, torch's CUDA build and the rule.

Before the guard existed, this job would have run the detector on the node's CPUs.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from overlearning.core.packs import pack_of_files

# The cluster and the site checkout are tests/test_slurm.py's (one definition of each).
from tests.test_slurm import _sacct, _site_checkout, slurm_env  # noqa: F401

pytestmark = pytest.mark.slurm

RULE = "clothes_probe"
PERSON_DIR = "market1501"
TARGET = f"data/{PERSON_DIR}/probes/clothes.zip"
TIMEOUT = 600  # seconds for the whole submission (polling included) on a busy machine


def test_gpu_rule_without_cuda_fails_within_a_minute(slurm_env: dict[str, str],  # noqa: F811
                                                     tmp_path: Path) -> None:
    checkout = _site_checkout(tmp_path)
    config_path = checkout / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    assert config["compute"]["device"] == "cpu"  # the demo's explicit choice ...
    config["compute"]["device"] = "cuda"         # ... and the paper's
    config_path.write_text(yaml.safe_dump(config))
    # The rule's inputs as the earlier rules leave them (the guard stops the job before
    # it reads any): a query pack of one image and each model's weights manifest.
    image = tmp_path / "0001_c1s1_000001_00.jpg"
    Image.new("RGB", (32, 64), (90, 40, 20)).save(image)
    queries = checkout / "data" / PERSON_DIR / "foreground_query.zip"
    queries.parent.mkdir(parents=True)
    pack_of_files(queries, {image.name: image})
    for key in config["models"]:
        manifest = checkout / config["weights"]["cache"] / key / "manifest.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text("{}\n")

    proc = subprocess.run(
        # The target first: --allowed-rules takes every name after it.
        ["snakemake", TARGET, "--profile", "profiles/slurm", "--allowed-rules", RULE],
        cwd=checkout, env=slurm_env, capture_output=True, text=True, timeout=TIMEOUT,
        stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-5000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    assert len(submitted) == 1, output[-5000:]

    (row,) = _sacct(slurm_env, "-j", submitted[0], "-o", "State,ElapsedRaw,Comment")
    state, elapsed, comment = row
    print(f"SLURM job {submitted[0]} ({comment}): {state} after {elapsed} s")
    assert comment.startswith(f"rule_{RULE}_"), row
    assert state == "FAILED" and int(elapsed) < 60, row

    log = (checkout / "logs" / RULE / f"{PERSON_DIR}.log").read_text()
    lines = log.splitlines()
    assert len(lines) == 1, log[-3000:]
    line = lines[0]
    assert line.startswith(f"compute.device: rule {RULE} asked for cuda (1 GPU) but CUDA is "
                           "not usable: "), line
    for fact in (f"host {socket.gethostname()}", "CUDA_VISIBLE_DEVICES=0", "NVIDIA driver none",
                 "torch CUDA build", "GPU archs"):
        assert fact in line, (fact, line)
    assert not (checkout / TARGET).exists()

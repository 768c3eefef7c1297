"""The workflow on a real SLURM cluster: every job through sbatch, a cancelled job resumes.

tests/slurm/cluster.sh starts a single-node cluster on this machine (munge, MariaDB,
slurmdbd, slurmctld, slurmd; four fake GPUs), installing Debian's packages on first use.
The demo config then runs through profiles/slurm, the real profile, with the test's
overrides (tests/slurm/profile: no containers, short polling, dataset preparation grouped
into one SLURM job). While it runs, the training job is cancelled with scancel as soon as
its first epoch checkpoint exists; the profile's retries resubmit it and it must resume
from that checkpoint. sacct then proves that every non-local job was a SLURM job.

The whole demo graph runs (every kind of job: local rules, grouped CPU rules, GPU rules
with their GPU request). On this 2-core machine each SLURM round trip costs 10-20 s, so
the test profile groups the many small preparation, anonymisation and report jobs.

Needs root and Debian's apt (CI has both). Where it cannot run, it fails loudly; set
OVERLEARNING_SKIP_SLURM=1 to skip it on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
STATE = Path(os.environ.get("OVERLEARNING_SLURM_DIR", "/tmp/overlearning-slurm"))
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SETTING = "ms"
# The whole demo graph (the default target); these are checked at the end.
TARGETS: list[str] = []
EXPECTED = [f"demo-run/results/models/{SETTING}/trunk.safetensors",
            f"demo-run/results/embeddings/{SETTING}/vis_test.npz",
            "demo-run/results/tables/main.csv",
            "demo-run/results/tables/anonymisation/main.csv"]
CHECKPOINT = f"demo-run/results/checkpoints/{SETTING}/checkpoint.pt"
TRAIN_LOG = f"demo-run/logs/train/{SETTING}.log"
RUN_TIMEOUT = 900  # seconds for the whole Snakemake run


def _cannot_run(reason: str) -> None:
    if os.environ.get("OVERLEARNING_SKIP_SLURM") == "1":
        pytest.skip(f"OVERLEARNING_SKIP_SLURM=1: {reason}")
    pytest.fail(f"the real-SLURM test cannot run: {reason} "
                "(set OVERLEARNING_SKIP_SLURM=1 to skip it on purpose)", pytrace=False)


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    if os.environ.get("OVERLEARNING_SKIP_SLURM") == "1":
        pytest.skip("OVERLEARNING_SKIP_SLURM=1")
    if os.geteuid() != 0:
        _cannot_run("it must run as root (it installs and starts SLURM's daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        _cannot_run("SLURM is not installed and apt-get is missing")
    env = dict(os.environ, OVERLEARNING_SLURM_DIR=str(STATE))
    start = subprocess.run(["bash", str(CLUSTER), "start"], env=env, capture_output=True,
                           text=True, timeout=600, stdin=subprocess.DEVNULL)
    try:
        if start.returncode != 0:
            pytest.fail(f"tests/slurm/cluster.sh start failed:\n{start.stdout}\n{start.stderr}",
                        pytrace=False)
        env["SLURM_CONF"] = str(STATE / "etc" / "slurm.conf")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        yield env
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL)


def _sacct(env: dict[str, str], *args: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "--starttime=now-1days", *args],
                         env=env, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def test_gpu_request_reaches_the_job(slurm_env: dict[str, str], tmp_path: Path) -> None:
    """The fake GPUs are real GRES to SLURM: a --gpus=2 job sees two devices."""
    out = tmp_path / "job.out"
    job = subprocess.run(
        ["sbatch", "--parsable", "--wait", "--gpus=2", "--mem=100", "-t", "1", "-o", str(out),
         "--wrap", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"],
        env=slurm_env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.strip()
    assert out.read_text().strip() == "CUDA_VISIBLE_DEVICES=0,1"
    (row,) = _sacct(slurm_env, "-j", job, "-o", "State,AllocTRES")
    assert row[0] == "COMPLETED" and "gres/gpu=2" in row[1]


def _cancel_train_after_first_checkpoint(proc: subprocess.Popen, work: Path, log: Path,
                                         env: dict[str, str]) -> str:
    """Wait for the setting's first checkpoint, then scancel its running SLURM job."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if (work / CHECKPOINT).exists():
            run_id = re.search(r"SLURM run ID: (\S+)", log.read_text())
            assert run_id, "Snakemake did not print its SLURM run ID"
            queue = subprocess.run(
                ["squeue", "-h", "--name", run_id.group(1), "-o", "%i|%k|%T"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout
            for line in queue.splitlines():
                job_id, comment, state = line.split("|")
                if comment == f"rule_train_wildcards_{SETTING}" and state == "RUNNING":
                    subprocess.run(["scancel", job_id], env=env, check=True)
                    return job_id
        time.sleep(0.2)
    pytest.fail("the training job never wrote a checkpoint while running:\n"
                + log.read_text()[-5000:], pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # SIGTERM would wait for the running jobs
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _submissions(log_text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Snakemake job id -> SLURM job id, and SLURM job id -> the Snakemake jobs it ran."""
    submitted: dict[str, str] = {}
    members: dict[str, set[str]] = {}
    group: set[str] | None = None
    for line in log_text.splitlines():
        if "Group job" in line:
            group = set()
            continue
        found = re.match(r"\s*jobid: (\d+)", line)
        if found and group is not None:
            group.add(found.group(1))
        sub = re.match(r"Job (\S+) has been submitted with SLURM jobid (\d+)", line)
        if sub:
            jobs = group if group is not None else {sub.group(1)}
            members.setdefault(sub.group(2), set()).update(jobs)
            for job in jobs:
                submitted[job] = sub.group(2)
            group = None
    return submitted, members


def test_demo_through_slurm_with_a_cancelled_training_job(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "run"
    work.mkdir()
    log = tmp_path / "snakemake.log"
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"),
           "--configfile", str(REPO / "config.demo.yaml"),
           str(REPO / "tests" / "slurm" / "config.yaml"),
           "--profile", str(REPO / "profiles" / "slurm"),
           "--workflow-profile", str(REPO / "tests" / "slurm" / "profile"),
           *TARGETS]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=slurm_env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        cancelled = _cancel_train_after_first_checkpoint(proc, work, log, slurm_env)
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        _stop(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-8000:]

    # Fault handling: the retried training job resumed from the checkpoint and finished.
    train_log = (work / TRAIN_LOG).read_text()
    resumed = re.search(r"resumed from checkpoint: epoch (\d+)", train_log)
    assert resumed and int(resumed.group(1)) >= 1, train_log[-3000:]
    for target in EXPECTED:
        assert (work / target).is_file(), target

    # Every job Snakemake finished ran in a SLURM job, but the two local rules (writing
    # the demo's stand-in downloads, fetching weights: the login node's work).
    finished = dict(re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", text))
    submitted, members = _submissions(text)
    not_submitted = {job: rule for job, rule in finished.items() if job not in submitted}
    # (`all` only collects the targets: it never runs anything.)
    assert set(not_submitted.values()) - {"all"} == {"demo_downloads", "weights"}, not_submitted
    assert {"extract", "vis_frames", "vis_split", "vis_crops", "train", "embed"} <= {
        finished[job] for job in submitted if job in finished}

    # ... and sacct knows each of those SLURM jobs: all completed, but the cancelled one.
    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    rows = {row[0]: row for row in _sacct(slurm_env, "--name", run_id,
                                          "-o", "JobID,State,Comment,AllocTRES")}
    assert set(rows) == set(members) | {cancelled}, (sorted(rows), sorted(members))
    assert rows[cancelled][1].startswith("CANCELLED")
    assert rows[cancelled][2] == f"rule_train_wildcards_{SETTING}"
    for job_id, (_, state, comment, tres) in rows.items():
        if job_id == cancelled:
            continue
        assert state == "COMPLETED", (job_id, state, comment)
        if comment.startswith(tuple(f"rule_{rule}_" for rule in _gpu_rules())):
            assert "gres/gpu=1" in tres, (comment, tres)  # profiles/slurm: gpu: 1
        else:
            assert "gres/gpu" not in tres, (comment, tres)
    comments = sorted(row[2] for job_id, row in rows.items() if job_id != cancelled)
    assert [c for c in comments if c == f"rule_train_wildcards_{SETTING}"], comments
    assert any(c.startswith("rule_prep") for c in comments), comments  # the grouped job


def _gpu_rules() -> set[str]:
    """Rules that profiles/slurm sends to GPU nodes (set-resources with gpu)."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    return {rule for rule, res in profile["set-resources"].items() if res.get("gpu")}

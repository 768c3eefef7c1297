"""docs/hpc.md's first day on a real SLURM cluster: every tested block, verbatim.

tests/slurm/cluster.sh starts a single-node cluster on this machine (munge, MariaDB,
slurmdbd, slurmctld, slurmd; four fake GPUs; partitions `debug` and `gpu`; account
`overlearning`), installing Debian's packages on first use. The test then makes a copy of
the checkout as a reader would have it after steps 1-5 of docs/hpc.md: `config.yaml` is
the demo's (generated stand-in downloads, tiny models, no containers, four epochs) and
`profiles/slurm/config.yaml` carries this cluster's ADAPT values plus the test's speed-ups
(tests/slurm/profile/config.yaml: short polling, dataset preparation grouped into one
SLURM job). In that copy it runs every ```bash test-hpc:<name> block of docs/hpc.md in
order, with the site variables set: check what a GPU job gets, fetch and verify the
weights, look at the plan, launch, list the run's jobs.

While the launch runs, a training job is requeued with `scontrol requeue` as soon as its
first epoch checkpoint exists (what pre-emption or a node failure does with the profile's
`slurm-requeue`); it must resume from that checkpoint under the same SLURM job id, with no
resubmission by Snakemake. sacct then proves that every job but the local rules was a
SLURM job, and the plan, the SLURM allocation and the job's own command line agree on the
training job's threads, CPUs and GPU.

Needs root and Debian's apt (CI has both). Where it cannot run, it fails loudly; set
OVERLEARNING_SKIP_SLURM=1 to skip it on purpose.
"""

from __future__ import annotations

import csv
import json
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
from tests.test_hpc_doc import doc_blocks, local_rule_names, workflow_gpu_rules

pytestmark = pytest.mark.slurm

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
STATE = Path(os.environ.get("OVERLEARNING_SLURM_DIR", "/tmp/overlearning-slurm"))
# docs/hpc.md's site variables, as this cluster (tests/slurm/cluster.sh) spells them.
SITE = {"ACCOUNT": "overlearning", "CPU_PARTITION": "debug", "GPU_PARTITION": "gpu"}
SETTING = "ms"
EXPECTED = [f"results/models/{SETTING}/trunk.safetensors",
            f"results/embeddings/{SETTING}/vis_test.npz",
            "results/tables/main.csv",
            "results/tables/anonymisation/main.csv"]
RUN_TIMEOUT = 1800  # seconds for the launch (the demo graph on 2 shared cores)
BLOCK_TIMEOUT = 300  # seconds for each of the other blocks


def _cannot_run(reason: str) -> None:
    if os.environ.get("OVERLEARNING_SKIP_SLURM") == "1":
        pytest.skip(f"OVERLEARNING_SKIP_SLURM=1: {reason}")
    pytest.fail(f"the real-SLURM test cannot run: {reason} "
                "(set OVERLEARNING_SKIP_SLURM=1 to skip it on purpose)", pytrace=False)


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    """One cluster for the whole module (both tests; docs/hpc.md's blocks included)."""
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


def _merge(base: dict, over: dict) -> dict:
    """Snakemake's way of layering configs and profiles: nested dicts merge, the rest replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _without_demo_prefix(value):
    """The demo keeps everything under demo-run/; the copy uses the paper's layout."""
    if isinstance(value, dict):
        return {k: _without_demo_prefix(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_demo_prefix(v) for v in value]
    if isinstance(value, str) and value.startswith("demo-run/"):
        return value[len("demo-run/"):]
    return value


def _site_checkout(root: Path) -> Path:
    """A copy of the checkout after docs/hpc.md steps 1-5, for this cluster and the demo."""
    checkout = root / "overlearning"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        source = REPO / rel
        if source.is_file():
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / rel)
    load = lambda rel: yaml.safe_load((REPO / rel).read_text())  # noqa: E731
    config = _merge(_merge(load("config.yaml"), load("config.demo.yaml")),
                    load("tests/slurm/config.yaml"))
    (checkout / "config.yaml").write_text(yaml.safe_dump(_without_demo_prefix(config)))
    # Step 5: the ADAPT lines, with this cluster's values; then the test's speed-ups.
    _adapt_site_profile(checkout, SITE["ACCOUNT"],
                        {SITE["CPU_PARTITION"]: {}, SITE["GPU_PARTITION"]: {"max_gpu": 4}})
    return checkout


def _adapt_site_profile(checkout: Path, account: str, partitions: dict) -> None:
    """docs/hpc.md step 5 in the copy: the account and partitions.yaml (+ the test's speed-ups)."""
    load = lambda rel: yaml.safe_load((REPO / rel).read_text())  # noqa: E731
    profile = load("profiles/slurm/config.yaml")
    profile["default-resources"]["slurm_account"] = account
    profile = _merge(profile, load("tests/slurm/profile/config.yaml"))
    site = checkout / "profiles" / "slurm"
    (site / "config.yaml").write_text(yaml.safe_dump(profile))
    (site / profile["slurm-partition-config"]).write_text(
        yaml.safe_dump({"partitions": partitions}))


def _run_block(name: str, script: str, checkout: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"docs/hpc.md block {name} failed:\n{output[-6000:]}"
    return output


def _planned_job(plan: str, rule: str, wildcards: str) -> dict[str, str]:
    """threads and resources of one job in a dry-run printout."""
    for block in re.split(r"\n(?=\S)", plan):
        if re.match(rf"(local)?rule {rule}:", block.strip()) and f"wildcards: {wildcards}" in block:
            threads = re.search(r"threads: (\d+)", block)
            resources = re.search(r"resources: (.*)", block).group(1)
            found = dict(item.split("=", 1) for item in resources.split(", "))
            found["threads"] = threads.group(1) if threads else "1"
            return found
    raise AssertionError(f"{rule} {wildcards} is not in the plan:\n{plan[-3000:]}")


def _requeue_train_after_first_checkpoint(proc: subprocess.Popen, checkout: Path, log: Path,
                                          env: dict[str, str]) -> tuple[str, str]:
    """Wait for the first training checkpoint of any setting, then requeue that running job.

    Returns (SLURM job id, setting). Any setting will do: which training job SLURM starts
    first depends on the free fake GPUs.
    """
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        started = {p.parent.name for p in (checkout / "results" / "checkpoints").glob(
            "*/checkpoint.pt")}
        if started:
            run_id = re.search(r"SLURM run ID: (\S+)", log.read_text())
            assert run_id, "Snakemake did not print its SLURM run ID"
            queue = subprocess.run(
                ["squeue", "-h", "--name", run_id.group(1), "-o", "%i|%k|%T"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout
            for line in queue.splitlines():
                job_id, comment, state = line.split("|")
                setting = comment.removeprefix("rule_train_wildcards_")
                if setting != comment and setting in started and state == "RUNNING":
                    subprocess.run(["scontrol", "requeue", job_id], env=env, check=True)
                    _release_requeued(job_id, env)
                    return job_id, setting
        time.sleep(0.2)
    pytest.fail("the training job never wrote a checkpoint while running:\n"
                + log.read_text()[-5000:], pytrace=False)


def _release_requeued(job_id: str, env: dict[str, str]) -> None:
    """SLURM holds a requeued job for about two minutes (BeginTime); start it now instead."""
    for _ in range(100):
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=env,
                               capture_output=True, text=True).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                           env=env, check=True)
            return
        time.sleep(0.2)


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


def test_first_day_as_documented(slurm_env: dict[str, str], tmp_path: Path) -> None:
    checkout = _site_checkout(tmp_path)
    env = dict(slurm_env, **SITE)
    blocks = doc_blocks()
    assert [name for name, _ in blocks] == ["cluster", "weights", "plan", "preflight", "launch",
                                            "logs"]
    script = dict(blocks)

    # What a GPU job of this cluster gets, asked for as the GPU rules ask.
    out = _run_block("cluster", script["cluster"], checkout, env)
    assert re.search(r"^cpus=8 gpus=\d+$", out, re.M), out

    # Weights on the "login node", then the check of the folder.
    out = _run_block("weights", script["weights"], checkout, env)
    assert re.search(r"all \d+ files match manifest.json", out), out

    # The plan: the training job's threads are the CPUs it will ask for beside its GPU.
    plan = _run_block("plan", script["plan"], checkout, env)
    planned = _planned_job(plan, "train", f"setting={SETTING}")
    threads = int(planned["threads"])
    demo_threads = yaml.safe_load((REPO / "config.demo.yaml").read_text())["resources"]["train"]
    assert threads == demo_threads["threads"] > 1, planned
    assert planned["gpu"] == "1" and int(planned["cpus_per_gpu"]) == threads, planned

    # The plan against the cluster: every job fits its partition (GPU jobs the GPU one),
    # the account is valid, the driver feature meets the floor.
    out = _run_block("preflight", script["preflight"], checkout, env)
    assert "pre-flight: every check passed" in out, out
    assert re.search(rf"partition +train \(\d+ jobs\) +fits {SITE['GPU_PARTITION']}: ", out), out
    assert re.search(rf"partition +verify_downloads \(\d+ jobs\) +fits {SITE['CPU_PARTITION']}: ", out), out
    assert re.search(rf"account +{SITE['ACCOUNT']} +valid", out), out
    assert re.search(r"GPU driver +\S+ +580 >= 580", out), out

    # Launch; requeue the training job after its first checkpoint (pre-emption).
    log = tmp_path / "snakemake.log"
    with log.open("w") as out_file:
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script["launch"]],
                                cwd=checkout, env=env, stdout=out_file,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        requeued, setting = _requeue_train_after_first_checkpoint(proc, checkout, log, env)
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        _stop(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-8000:]
    assert "pre-flight: every check passed" in text  # the run checked before submitting

    # The requeued job resumed from the checkpoint and finished; Snakemake never resubmitted.
    train_log = (checkout / "logs" / "train" / f"{setting}.log").read_text()
    resumed = re.search(r"resumed from checkpoint: epoch (\d+)", train_log)
    assert resumed and int(resumed.group(1)) >= 1, train_log[-3000:]
    assert "Trying to restart job" not in text
    for target in EXPECTED:
        assert (checkout / target).is_file(), target
    states = [row[0] for row in _sacct(env, "--duplicates", "-j", requeued, "-o", "State")]
    assert states == ["REQUEUED", "COMPLETED"], states

    # Every job Snakemake finished ran in a SLURM job, but the local rules (the demo's
    # stand-in downloads, weights, tables and figures: the login node's work).
    finished = dict(re.findall(r"Finished jobid: (\d+) \(Rule: (\w+)\)", text))
    submitted, members = _submissions(text)
    not_submitted = {rule for job, rule in finished.items() if job not in submitted} - {"all"}
    local = local_rule_names() | {"demo_downloads"}
    # (The weights ran before, in the weights block: their manifests are already there.)
    assert {"demo_downloads", "tables"} <= not_submitted <= local, not_submitted
    assert "model_weights" not in finished.values()
    ran_in_slurm = {finished[job] for job in submitted if job in finished}
    assert {"verify_downloads", "vis_frames", "vis_split", "vis_crops", "train", "tune_worker",
            "embed"} <= ran_in_slurm
    assert not ran_in_slurm & local_rule_names(), ran_in_slurm & local_rule_names()

    # ... sacct knows each of those SLURM jobs, all completed, and the documented listing
    # shows them.
    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    rows = {row[0]: row for row in _sacct(env, "--name", run_id,
                                          "-o", "JobID,State,Comment,AllocTRES")}
    assert set(rows) == set(members), (sorted(rows), sorted(members))
    assert requeued in rows and rows[requeued][2] == f"rule_train_wildcards_{setting}"
    gpu_rules = _gpu_rules()
    for job_id, (_, state, comment, tres) in rows.items():
        assert state == "COMPLETED", (job_id, state, comment)
        if comment.startswith(tuple(f"rule_{rule}_" for rule in gpu_rules)):
            assert "gres/gpu=1" in tres, (comment, tres)  # profiles/slurm: gpu: 1
        else:
            assert "gres/gpu" not in tres, (comment, tres)
    assert any(c.startswith("rule_prep") for _, _, c, _ in rows.values())  # the grouped job
    _check_parallel_tuning(checkout, rows)
    # The site profile's plugin options: the efficiency report of the run (sacct) and
    # extended benchmark files.
    (report,) = (checkout / "logs" / "slurm").glob(f"efficiency_report_{run_id}.csv")
    assert "rule_train" in report.read_text(), report.read_text()[:2000]
    header = (checkout / "logs" / "benchmarks" / "train" / f"{setting}.tsv").read_text()
    assert "cpu_usage" in header.splitlines()[0] and "resources" in header.splitlines()[0]
    listing = _run_block("logs", script["logs"], checkout, env)
    assert f"rule_train_wildcards_{setting}" in listing, listing

    # What the training job really got: the plan's threads (every setting has the same) as
    # CPUs beside one GPU, and the same number as its script's --threads (printed by the
    # job itself in its SLURM log).
    tres = rows[requeued][3]
    assert f"cpu={threads}," in tres + "," and "gres/gpu=1" in tres, tres
    (slurm_log,) = (checkout / "logs" / "slurm" / "rule_train").rglob(f"{requeued}.log")
    assert f"--threads {threads} " in slurm_log.read_text(), slurm_log.read_text()[-3000:]


def _gpu_rules() -> set[str]:
    """Rules that the workflow profile (profiles/default) gives a GPU."""
    return workflow_gpu_rules()


def _check_parallel_tuning(checkout: Path, rows: dict[str, list[str]]) -> None:
    """The search ran as `tuning.workers` SLURM jobs sharing one study with every trial."""
    tuning = yaml.safe_load((checkout / "config.yaml").read_text())["tuning"]
    assert tuning["workers"] == 2
    (setting,) = tuning["settings"]
    out = checkout / "results" / "tuning" / setting
    workers = {row[2] for row in rows.values() if row[2].startswith("rule_tune_worker_")}
    assert len(workers) == 2, workers
    records = [json.loads((out / "workers" / f"{i}.json").read_text()) for i in range(2)]
    assert records[0]["study"] == records[1]["study"]
    trials = list(csv.DictReader((out / "trials.csv").open()))
    done = [t for t in trials if t["state"] == "COMPLETE"]
    assert sorted(int(t["slot"]) for t in done) == list(range(tuning["trials"])), trials
    ran = sorted(str(t["number"]) for r in records for t in r["trials"])
    assert ran == sorted(t["number"] for t in trials), (ran, trials)  # each by one worker
    best = json.loads((out / "best.json").read_text())
    assert str(best["trial"]) in {t["number"] for t in done}


def test_preflight_refuses_what_the_cluster_cannot_run(slurm_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """GPU jobs sent to `short` (5 minutes) while `train` asks for more, an account that is
    not the user's, a node whose driver is below the floor: one refusal lists all three."""
    checkout = _site_checkout(tmp_path)
    _adapt_site_profile(checkout, "no_such_account",
                        {SITE["CPU_PARTITION"]: {}, "short": {"max_gpu": 4}})
    minutes = yaml.safe_load((checkout / "config.yaml").read_text())["resources"]["train"]
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], env=slurm_env, capture_output=True,
                          text=True, check=True).stdout.split()[0]

    def features(value: str) -> None:
        subprocess.run(["scontrol", "update", f"NodeName={node}", f"AvailableFeatures={value}",
                        f"ActiveFeatures={value}"], env=slurm_env, check=True)

    features("nvidia-driver-535")
    try:
        proc = subprocess.run([sys.executable, "scripts/preflight.py", "--profile",
                               "profiles/slurm"], cwd=checkout, env=slurm_env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    finally:
        features("nvidia-driver-580")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-6000:]
    assert (f"partition rule train: runtime {minutes['runtime']} min exceeds partition "
            "short's time limit 5 min") in out, out[-6000:]
    assert "account no_such_account: not an account of this user" in out, out[-6000:]
    assert f"GPU driver {node}: driver 535 is below 580" in out, out[-6000:]
    assert "pre-flight: REFUSED, " in out
    # Nothing was submitted, and the check left no lock behind.
    queue = subprocess.run(["squeue", "-h", "-o", "%k"], env=slurm_env, capture_output=True,
                           text=True, check=True).stdout
    assert not queue.strip(), queue
    assert not list((checkout / ".snakemake" / "locks").glob("*"))

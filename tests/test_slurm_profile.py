"""profiles/slurm plans the paper's whole graph with the right SLURM requests.

A dry-run of the paper config (config.yaml) through profiles/slurm, on an empty tree of the
right shape (the download paths exist as empty files), must plan every stage. For each job
it prints, the sbatch command line is then built with the SLURM executor plugin's own
functions (``get_submit_command`` + ``set_gres_string``, what the plugin runs for a real
submission), and checked: GPU rules ask for a GPU, CPU rules do not, time and memory come
from config.yaml ``resources:``, and the threads the plan shows (what the job's script
gets as --threads) are the CPUs the job asks for. Neither a cluster nor Apptainer is
needed, as on a login node before the image exists.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

from tests.conftest import REPO

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())

# Rules that must appear in the paper's plan, one per stage of the study.
STAGE_RULES = {"verify_downloads", "vis_frames", "vis_split", "vis_crops", "ovis_crops", "person_set",
               "person_probes", "train", "detect_shard", "segment", "embed", "metrics",
               "tables", "explain"}


def _gpu_rules() -> dict[str, str]:
    """Rules that run in the GPU image -> their config.yaml `resources:` key (read statically
    from rules/*.smk, so a new GPU rule without a GPU request in the profile is caught)."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):(.*?)(?=^rule |\Z)", text, re.S | re.M):
            body = match.group(2)
            if 'container_for("gpu")' in body:
                key = re.search(r'threads_for\("(\w+)"\)', body)
                found[match.group(1)] = key.group(1) if key else "default"
    return found


# config.yaml `resources:` key of each GPU rule (threads, mem_mb, runtime come from there).
GPU_RESOURCE_KEYS = _gpu_rules()


class _Resources(dict):
    """What the plugin reads from ``job.resources``: ``.get(key)`` and ``.key``."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _value(text: str):
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def parse_dry_run(output: str) -> list[SimpleNamespace]:
    """Jobs of a Snakemake dry-run printout: rule, local or not, threads, resources."""
    jobs: list[SimpleNamespace] = []
    current: SimpleNamespace | None = None
    for line in output.splitlines():
        head = re.fullmatch(r"(local)?rule (\w+):", line.strip())
        if head and not line.startswith(" "):
            current = SimpleNamespace(name=head.group(2), local=bool(head.group(1)),
                                      threads=1, resources=_Resources(), wildcards="")
            jobs.append(current)
            continue
        if current is None or not line.startswith("    "):
            continue
        key, _, rest = line.strip().partition(": ")
        if key == "threads":
            current.threads = int(rest)
        elif key == "wildcards":
            current.wildcards = rest
        elif key == "resources":
            for item in rest.split(", "):
                name, _, value = item.partition("=")
                current.resources[name] = _value(value)
    return jobs


def sbatch_call(job: SimpleNamespace) -> list[str]:
    """The sbatch arguments the SLURM plugin builds for ``job`` (its own functions)."""
    plugin_job = SimpleNamespace(resources=job.resources, threads=job.threads, name=job.name,
                                 is_group=lambda: False)
    validate_slurm_extra(plugin_job)  # refuses --gres/--gpus hidden in slurm_extra
    account = job.resources.get("slurm_account")
    partition = job.resources.get("slurm_partition")
    params = {
        "run_uuid": "plan", "slurm_logfile": "logs/slurm/%j.log",
        "comment_str": f"rule_{job.name}", "workdir": "/work",
        "account": f"-A {shlex.quote(account)}" if account else "",
        "partition": f"-p {shlex.quote(partition)}" if partition else "",
    }
    call = get_submit_command(plugin_job, params) + set_gres_string(plugin_job)
    return shlex.split(call)


def _option(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory: pytest.TempPathFactory) -> list[SimpleNamespace]:
    work = tmp_path_factory.mktemp("paper-plan")
    for dataset in PAPER["datasets"].values():
        for archive in dataset["archives"]:
            path = work / archive["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    # As on a login node: no apptainer command on PATH (the plan must still work; the
    # workflow then plans without containers and says so), no --cores (the profile's own
    # `cores` must be what caps threads, as in the SLURM job).
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not any((Path(p) / tool).exists()
                                            for tool in ("apptainer", "singularity")))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{path}")
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--profile", str(PROFILE.parent), "-n"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    jobs = parse_dry_run(output)
    assert jobs, output[-4000:]
    return jobs


def test_profile_sets_what_a_cluster_user_adapts() -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert profile["software-deployment-method"] == "apptainer"
    for key in ("jobs", "retries", "rerun-incomplete", "latency-wait", "slurm-logdir",
                "apptainer-prefix"):
        assert key in profile, key
    # Failures that would recur are not resubmitted; pre-emption and node failure are
    # requeued by SLURM itself (the job keeps its id and resumes from its checkpoint).
    assert profile["retries"] == 0 and profile["slurm-requeue"] is True
    assert profile["rerun-incomplete"] is True
    # Nothing site-specific is on by default: no bind of a path that may not exist, no
    # absolute image cache.
    assert "--bind" not in profile["apptainer-args"]
    assert not str(profile["apptainer-prefix"]).startswith("/")
    assert re.fullmatch(r"\d+[smhd]", profile["default-resources"]["runtime"])
    assert isinstance(profile["default-resources"]["mem_mb"], int)
    assert "--nv" in profile["apptainer-args"].split()
    # Hub caches point at the weights cache (overlearning.models.cache.hub_homes uses the same).
    from overlearning.models.cache import hub_homes

    cache = PAPER["weights"]["cache"]
    homes = hub_homes(cache)
    for var in ("TORCH_HOME", "HF_HOME"):
        # Relative to the working directory, like config.yaml's weights.cache.
        expected = f"{cache}/{Path(homes[var]).name}"
        assert f"--env {var}={expected}" in profile["apptainer-args"], var


def test_every_gpu_rule_in_the_profile_exists() -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    rules = subprocess.run(
        [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile",
         str(REPO / "config.demo.yaml"), "--list-rules"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=300,
    ).stdout.split()
    # A renamed rule would silently lose its GPU: every profile entry names a real rule.
    for rule in profile["set-resources"]:
        assert rule in rules, f"profiles/slurm set-resources names unknown rule {rule!r}"
    assert set(profile["set-resources"]) == set(GPU_RESOURCE_KEYS)


def test_paper_plan_has_every_stage(paper_plan: list[SimpleNamespace]) -> None:
    planned = {job.name for job in paper_plan}
    assert STAGE_RULES <= planned, STAGE_RULES - planned
    trained = [job for job in paper_plan if job.name == "train"]
    assert len(trained) == len(PAPER["training"]["settings"])
    shards = [job for job in paper_plan if job.name == "detect_shard"]
    assert len(shards) == PAPER["detection"]["shards"] * len(PAPER["detection"]["sets"])


def test_gpu_rules_get_a_gpu_in_sbatch(paper_plan: list[SimpleNamespace]) -> None:
    resources = PAPER["resources"]
    checked = set()
    for job in paper_plan:
        if job.name not in GPU_RESOURCE_KEYS:
            continue
        args = sbatch_call(job)
        key = GPU_RESOURCE_KEYS[job.name]
        expected = resources.get(key, resources["default"])
        assert "--gpus=1" in args, (job.name, args)
        # One number: config.yaml threads = the plan's threads (the script's --threads)
        # = the CPUs SLURM allocates beside the GPU.
        assert job.threads == expected["threads"], (job.name, job.threads)
        assert f"--cpus-per-gpu={expected['threads']}" in args, (job.name, args)
        assert _option(args, "-t") == str(expected["runtime"]), (job.name, args)
        assert _option(args, "--mem") == str(expected["mem_mb"]), (job.name, args)
        assert not any(a.startswith("--ntasks=") for a in args)  # plugin: GPU jobs have none
        checked.add(job.name)
    assert {"train", "detect_shard", "segment", "embed", "explain"} <= checked


def test_cpu_rules_get_no_gpu(paper_plan: list[SimpleNamespace]) -> None:
    for job in paper_plan:
        if job.name in GPU_RESOURCE_KEYS or job.name == "all":
            continue
        args = sbatch_call(job)
        assert not any(a.startswith(("--gpus", "--gres")) for a in args), (job.name, args)
        assert f"--cpus-per-task={job.threads}" in args, (job.name, args)
        assert _option(args, "-t") is not None and _option(args, "--mem") is not None


def test_real_run_without_apptainer_stops_before_any_job(tmp_path: Path) -> None:
    """The dry-run may plan without Apptainer; a real run with containers must not start."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not any((Path(p) / tool).exists()
                                            for tool in ("apptainer", "singularity")))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{path}")
    for dataset in PAPER["datasets"].values():
        for archive in dataset["archives"]:
            (tmp_path / archive["path"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / archive["path"]).touch()
    # The local executor (no SLURM here), the paper's containers, the profile's --sdm.
    proc = subprocess.run([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--sdm", "apptainer",
                           "--cores", "1", "weights"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert "no apptainer or singularity command is on PATH" in proc.stdout + proc.stderr
    assert not (tmp_path / "resources").exists()  # the weights rule never ran


def test_plan_agrees_with_the_documented_resources(paper_plan: list[SimpleNamespace]) -> None:
    """docs/hpc.md's per-rule table is what the dry-run shows, job by job."""
    from tests.test_hpc_doc import table_by_rule

    table = table_by_rule()
    for job in paper_plan:
        if job.name == "all":
            continue
        assert job.name in table, f"rule {job.name} is missing from docs/hpc.md's table"
        row = table[job.name]
        assert job.threads == row["threads"], job.name
        assert job.resources["mem_mb"] == row["mem_mb"], job.name
        assert job.resources["runtime"] == row["runtime"], job.name
        assert job.resources.get("gpu", 0) == row["gpu"], job.name
        if row["gpu"]:
            assert job.resources["cpus_per_gpu"] == row["threads"], job.name

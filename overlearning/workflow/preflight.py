"""Before a SLURM run submits anything: does the plan fit the cluster, and is every input
the jobs cannot fetch themselves in place?

Checks, each a row of one table (scripts/preflight.py; the Snakefile's onstart runs the
same for every real SLURM run, before the first job is submitted):

- every job that goes to SLURM fits the partition it will land on (its own
  ``slurm_partition``, else the plugin's choice from ``slurm-partition-config``, else the
  cluster's default partition): the partition exists and is up, and the job's run time,
  memory, CPUs and GPUs are within its time limit and its largest node;
- the account of the jobs (``slurm_account``) may submit (sacctmgr, where SLURM has
  accounting);
- the container images exist and match the digest recorded beside them (``<image>.sha256``,
  written by containers/build.sh);
- the weights cache verifies against its manifest (every per-model manifest too);
- the downloads still to be extracted exist and match their configured sha256/md5;
- GPU nodes' NVIDIA drivers meet the image's floor, where a node feature states it.

Everything is checked, then every problem is listed at once. Checksums already verified
for a file of the same size and modification time are taken from
``.snakemake/preflight/checksums.json`` (images and downloads are many GB).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overlearning.core.atomic import read_json, write_json
from overlearning.core.errors import WorkflowInputError
from overlearning.core.hashing import file_digests
from overlearning.models.cache import MANIFEST, check_listed_file, read_manifest
from overlearning.workflow.container_check import recorded_digest
from overlearning.workflow.slurm_cluster import Partition, account_valid, read_cluster

# The image's torch is a CUDA 13.0 build: NVIDIA driver 580 or newer (docs/hpc.md).
DRIVER_FLOOR = 580
CHECKSUM_CACHE = Path(".snakemake") / "preflight" / "checksums.json"


@dataclass
class PlannedJob:
    """One job of the plan, as the executor will submit it."""

    rule: str
    threads: int
    resources: dict[str, Any]
    local: bool = False
    wildcards: dict[str, str] = field(default_factory=dict)

    def number(self, key: str) -> int:
        value = self.resources.get(key, 0)
        try:
            return int(value)
        except (TypeError, ValueError):
            return 0

    @property
    def gpus(self) -> int:
        gpus = self.number("gpu")
        gres = str(self.resources.get("gres", "") or "")
        if not gpus and gres.startswith("gpu"):
            tail = gres.split(":")[-1]
            gpus = int(tail) if tail.isdigit() else 1
        return gpus

    @property
    def cpus(self) -> int:
        """The CPUs the SLURM plugin asks for (cpus_per_gpu x GPUs, else the threads)."""
        if self.number("cpus_per_task"):
            return self.number("cpus_per_task")
        if self.gpus and self.number("cpus_per_gpu"):
            return self.number("cpus_per_gpu") * self.gpus
        return self.threads


class _PluginJob:
    """What the SLURM plugin's partition scoring reads of a job."""

    class _Resources(dict):
        def __getattr__(self, name: str) -> Any:
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

    def __init__(self, job: PlannedJob) -> None:
        self.name = job.rule
        self.threads = job.threads
        self.resources = self._Resources(job.resources)

    def __str__(self) -> str:
        return self.name


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ok(self, check: str, subject: str, detail: str) -> None:
        self.rows.append((check, subject, detail))

    def bad(self, check: str, subject: str, problem: str) -> None:
        self.rows.append((check, subject, f"PROBLEM: {problem}"))
        self.problems.append(f"{check} {subject}: {problem}")

    def table(self) -> str:
        head = ("check", "subject", "result")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(2)]
        lines = [f"{head[0]:<{widths[0]}}  {head[1]:<{widths[1]}}  {head[2]}",
                 f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 6}"]
        lines += [f"{c:<{widths[0]}}  {s:<{widths[1]}}  {r}" for c, s, r in self.rows]
        return "\n".join(lines)

    def summary(self) -> str:
        if not self.problems:
            return "pre-flight: every check passed"
        return (f"pre-flight: REFUSED, {len(self.problems)} problem(s):\n"
                + "\n".join(f"  - {p}" for p in self.problems))


# ----------------------------------------------------------------------------------------
# Jobs against partitions


def job_partition(job: PlannedJob, partitions: Mapping[str, Partition],
                  partition_file: Path | None) -> str | None:
    """Where the SLURM plugin will send the job (its own rules, in its order)."""
    if job.resources.get("slurm_partition"):
        return str(job.resources["slurm_partition"])
    if partition_file is not None:
        # Imported here: the plugin's package pulls pandas and numpy, which the workflow
        # must not import when it is parsed (tests/test_login_env.py); only a run reaches this.
        from snakemake_executor_plugin_slurm.partitions import (
            get_best_partition,
            read_partition_file,
        )

        chosen = get_best_partition(read_partition_file(partition_file), _PluginJob(job),
                                    logging.getLogger("preflight"))
        if chosen:
            return chosen
    return next((name for name, p in partitions.items() if p.default), None)


def check_jobs(jobs: Sequence[PlannedJob], partitions: Mapping[str, Partition],
               partition_file: Path | None, report: Report) -> set[str]:
    """One row per (rule, partition); returns the partitions the plan uses."""
    groups: dict[tuple[str, str | None], list[PlannedJob]] = {}
    for job in jobs:
        if not job.local:
            groups.setdefault((job.rule, job_partition(job, partitions, partition_file)),
                              []).append(job)
    used = set()
    for (rule, name), members in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        subject = f"{rule} ({len(members)} job{'s' * (len(members) > 1)})"
        if name is None:
            report.bad("partition", subject, "no partition: set slurm-partition-config or a "
                       "default partition")
            continue
        partition = partitions.get(name)
        if partition is None:
            report.bad("partition", subject, f"partition {name} does not exist "
                       f"(sinfo lists {', '.join(sorted(partitions))})")
            continue
        used.add(name)
        runtime = max(j.number("runtime") for j in members)
        memory = max(j.number("mem_mb") for j in members)
        cpus = max(j.cpus for j in members)
        gpus = max(j.gpus for j in members)
        limit = "none" if partition.max_minutes is None else f"{partition.max_minutes} min"
        problems = []
        if not partition.up:
            problems.append(f"partition {name} is not up")
        if partition.max_minutes is not None and runtime > partition.max_minutes:
            problems.append(f"runtime {runtime} min exceeds partition {name}'s time limit "
                            f"{partition.max_minutes} min")
        if memory > partition.memory_mb:
            problems.append(f"memory {memory} MB exceeds the largest node of partition {name} "
                            f"({partition.memory_mb} MB)")
        if cpus > partition.cpus:
            problems.append(f"{cpus} CPUs exceed the largest node of partition {name} "
                            f"({partition.cpus} CPUs)")
        if gpus > partition.gpus:
            problems.append(f"{gpus} GPUs requested, partition {name}'s nodes have at most "
                            f"{partition.gpus}")
        fit = (f"{name}: time {runtime} min (limit {limit}), memory {memory} of "
               f"{partition.memory_mb} MB, {cpus} of {partition.cpus} CPUs, "
               f"{gpus} of {partition.gpus} GPUs")
        if problems:
            for problem in problems:
                report.bad("partition", f"rule {rule}", problem)
        else:
            report.ok("partition", subject, f"fits {fit}")
    return used


def check_accounts(jobs: Sequence[PlannedJob], report: Report) -> None:
    accounts = sorted({str(j.resources["slurm_account"]) for j in jobs
                       if not j.local and j.resources.get("slurm_account")})
    if not accounts:
        report.ok("account", "-", "none given (submitted without -A)")
    for account in accounts:
        valid = account_valid(account)
        if valid is None:
            report.ok("account", account, "not checked (sacctmgr has no accounting here)")
        elif valid:
            report.ok("account", account, "valid for this user (sacctmgr)")
        else:
            report.bad("account", account, "not an account of this user (sacctmgr show assoc)")


def check_drivers(partitions: Mapping[str, Partition], used: Iterable[str],
                  report: Report) -> None:
    nodes = {n.name: n for p in used for n in partitions[p].nodes if n.gpus}
    reported = {name: node.driver for name, node in nodes.items() if node.driver is not None}
    if not nodes:
        return
    if not reported:
        report.ok("GPU driver", f"{len(nodes)} GPU node(s)",
                  f"not reported by SLURM (needs >= {DRIVER_FLOOR}; GPU jobs check at start)")
    for name, driver in sorted(reported.items()):
        if driver < DRIVER_FLOOR:
            report.bad("GPU driver", name, f"driver {driver} is below {DRIVER_FLOOR} "
                       "(the image's CUDA 13 torch)")
        else:
            report.ok("GPU driver", name, f"{driver} >= {DRIVER_FLOOR}")


# ----------------------------------------------------------------------------------------
# Files: image, weights, downloads


class ChecksumCache:
    """Digests of files already verified, keyed by path, size and modification time."""

    def __init__(self, path: Path = CHECKSUM_CACHE) -> None:
        self.path = path
        self.known: dict[str, Any] = read_json(path) if path.is_file() else {}

    def digests(self, file: Path, algorithms: Sequence[str]) -> dict[str, str]:
        stat = file.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = self.known.get(str(file.resolve()), {})
        if entry.get("stamp") != stamp or not set(algorithms) <= set(entry.get("digests", {})):
            entry = {"stamp": stamp, "digests": file_digests(file, algorithms)}
            self.known[str(file.resolve())] = entry
            write_json(self.path, self.known)
        return {a: entry["digests"][a] for a in algorithms}


def check_images(images: Iterable[str], report: Report, cache: ChecksumCache) -> None:
    for image in sorted(set(images)):
        if "://" in image:
            report.ok("image", image, "remote: Snakemake pulls it (not checked here)")
            continue
        path = Path(image)
        if not path.is_file():
            report.bad("image", image, "not found (make container, docs/hpc.md step 2)")
            continue
        recorded = recorded_digest(path)
        if recorded is None:
            report.bad("image", image, f"no recorded digest {image}.sha256 "
                       "(containers/build.sh writes it)")
            continue
        actual = "sha256:" + cache.digests(path, ["sha256"])["sha256"]
        if actual != recorded:
            report.bad("image", image, f"digest {actual[:19]}... differs from the recorded "
                       f"{recorded[:19]}...")
        else:
            report.ok("image", image, f"digest matches {image}.sha256 ({actual[:19]}...)")


def weights_manifests(cache: Path) -> list[Path]:
    """The model folders of the weights cache that hold a manifest
    (``<cache>/<model>/manifest.json``, one per model)."""
    return sorted(p.parent for p in cache.glob(f"*/{MANIFEST}"))


def check_weights(cache: Path, planned_rules: set[str], report: Report) -> None:
    folders = weights_manifests(cache)
    if not folders:
        if "model_weights" in planned_rules:
            report.ok("weights", str(cache), "not there yet: the weights jobs of this run "
                      "make it")
        else:
            report.bad("weights", str(cache), f"no {MANIFEST} in any model folder: run the "
                       "weights rules first")
        return
    for folder in folders:
        try:
            manifest = read_manifest(folder)
            for rel in sorted(manifest):
                check_listed_file(folder, rel, manifest, verify=True)
        except WorkflowInputError as error:
            report.bad("weights", str(folder / MANIFEST), f"{error.where}: {error.problem}")
        else:
            report.ok("weights", str(folder / MANIFEST), f"all {len(manifest)} files verify")


def check_downloads(datasets: Mapping[str, Any], extracting: set[str], produced: set[str],
                    report: Report, cache: ChecksumCache) -> None:
    """Archives of the datasets this run still extracts: there, and with their checksums."""
    for name in sorted(extracting):
        for archive in datasets[name].get("archives", []):
            path = Path(archive["path"])
            expected = {a: str(archive[a]).lower() for a in ("sha256", "md5") if archive.get(a)}
            if not path.is_file():
                if str(path) in produced:
                    report.ok("download", str(path), "made by this run")
                else:
                    report.bad("download", str(path), "missing (docs/datasets.md)")
                continue
            if not expected:
                report.ok("download", str(path), "present; no checksum in config.yaml to check")
                continue
            actual = cache.digests(path, sorted(expected))
            wrong = [a for a in expected if actual[a] != expected[a]]
            if wrong:
                report.bad("download", str(path), f"{', '.join(wrong)} differs from config.yaml "
                           "(incomplete or corrupt download?)")
            else:
                report.ok("download", str(path), f"{', '.join(sorted(expected))} match")


# ----------------------------------------------------------------------------------------
# The whole check


def preflight(jobs: Sequence[PlannedJob], config: Mapping[str, Any],
              partition_file: Path | None, images: Iterable[str],
              produced: set[str]) -> Report:
    """Every check on the plan ``jobs`` (the run's config; the images it will run in; files
    jobs of the plan produce)."""
    report = Report()
    cache = ChecksumCache()
    partitions = read_cluster()
    used = check_jobs(jobs, partitions, partition_file, report)
    check_accounts(jobs, report)
    check_images(images, report, cache)
    rules = {j.rule for j in jobs}
    check_weights(Path(config["weights"]["cache"]), rules, report)
    extracting = {j.wildcards.get("dataset", "") for j in jobs if j.rule == "extract"}
    check_downloads(config["datasets"], extracting - {""}, produced, report, cache)
    check_drivers(partitions, used, report)
    return report


def partition_file_of(setting: Path | str | None) -> Path | None:
    """The plugin's partition file: its setting, else $SNAKEMAKE_SLURM_PARTITIONS."""
    if setting:
        return Path(setting)
    env = os.environ.get("SNAKEMAKE_SLURM_PARTITIONS")
    return Path(env) if env else None



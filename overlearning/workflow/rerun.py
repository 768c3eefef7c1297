"""Rerun one job of the workflow and compare its outputs with the recorded ones.

The reproducibility check behind scripts/rerun_compare.py: ask Snakemake (dry-run,
``--force``) which job makes the given target and what all its outputs are, copy those
recorded outputs aside, rerun exactly that job with Snakemake (through the same profile,
so in its container and, on a cluster, through SLURM), and compare every output file byte
for byte with its recorded copy. Provenance sidecars (``*.provenance.json``) record the
host, job and time of a run, so they are left out of the comparison.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError

DEFAULT_EXCLUDE = ("*.provenance.json",)


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    outputs: tuple[str, ...]


def parse_planned_jobs(dry_run: str) -> list[PlannedJob]:
    """Rule and outputs of every job in a Snakemake dry-run printout."""
    jobs: list[PlannedJob] = []
    rule: str | None = None
    for line in dry_run.splitlines():
        head = re.fullmatch(r"(?:local)?rule (\w+):", line.strip())
        if head and not line.startswith("    "):
            rule = head.group(1)
            continue
        match = re.match(r"\s+output: (.*)$", line)
        if match and rule is not None:
            jobs.append(PlannedJob(rule, tuple(p.strip() for p in match.group(1).split(", "))))
            rule = None
    return jobs


def _excluded(rel: str, exclude: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, pattern) for pattern in exclude)


def tree_digests(path: Path, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> dict[str, str]:
    """sha256 of a file, or of every file below a directory, keyed by relative path."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digests: dict[str, str] = {}
    for file in files:
        rel = "." if file == path else file.relative_to(path).as_posix()
        if rel != "." and _excluded(rel, exclude):
            continue
        digests[rel] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def compare_trees(recorded: Path, rerun: Path,
                  exclude: Sequence[str] = DEFAULT_EXCLUDE) -> dict[str, list[str]]:
    """Files that differ, that only the recorded output has, that only the rerun has."""
    old = tree_digests(recorded, exclude) if recorded.exists() else {}
    new = tree_digests(rerun, exclude) if rerun.exists() else {}
    return {
        "differing": sorted(k for k in old.keys() & new.keys() if old[k] != new[k]),
        "only_recorded": sorted(old.keys() - new.keys()),
        "only_rerun": sorted(new.keys() - old.keys()),
    }


def snapshot(outputs: Iterable[str], workdir: Path, dest: Path) -> None:
    """Copy the recorded outputs (files or directories) to ``dest``, same relative paths."""
    if dest.exists():
        shutil.rmtree(dest)
    for output in outputs:
        source = workdir / output
        if not source.exists():
            raise WorkflowInputError(source, "no recorded output to compare with (run the workflow first)")
        target = dest / output
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy2(source, target)


def _snakemake(command: Sequence[str], workdir: Path, log: Path | None = None) -> str:
    done = subprocess.run(list(command), cwd=workdir, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    text = done.stdout + done.stderr
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(text)
    if done.returncode != 0:
        raise WorkflowInputError(" ".join(command[:3]) + " ...",
                                 f"Snakemake failed ({done.returncode}):\n{text[-4000:]}")
    return text


def rerun_and_compare(targets: Sequence[str], snakemake: Sequence[str], workdir: Path,
                      keep: Path, exclude: Sequence[str] = DEFAULT_EXCLUDE) -> dict[str, Any]:
    """Rerun the job(s) making ``targets`` and compare their outputs with the recorded ones.

    ``snakemake`` is the command with the user's options (profile, config files, ...).
    The recorded outputs stay in ``keep``/recorded for inspection.
    """
    workdir = Path(workdir)
    plan_text = _snakemake([*snakemake, "--force", "--dry-run", *targets], workdir)
    jobs = parse_planned_jobs(plan_text)
    if not jobs:
        raise WorkflowInputError(" ".join(targets), "Snakemake planned no job for these targets")
    outputs = sorted({out for job in jobs for out in job.outputs})
    recorded = keep / "recorded"
    snapshot(outputs, workdir, recorded)
    _snakemake([*snakemake, "--force", *targets], workdir, log=keep / "rerun.log")
    per_output = {out: compare_trees(recorded / out, workdir / out, exclude) for out in outputs}
    identical = all(not any(result.values()) for result in per_output.values())
    return {
        "targets": list(targets),
        "jobs": [{"rule": job.rule, "outputs": list(job.outputs)} for job in jobs],
        "outputs": per_output,
        "excluded": list(exclude),
        "identical": identical,
        "recorded_copy": os.path.relpath(recorded, workdir),
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [f"reran: {', '.join(sorted({job['rule'] for job in report['jobs']}))}"]
    for output, result in report["outputs"].items():
        if not any(result.values()):
            lines.append(f"  same       {output}")
            continue
        lines.append(f"  DIFFERENT  {output}")
        for kind, label in (("differing", "bytes differ"), ("only_recorded", "missing now"),
                            ("only_rerun", "new file")):
            for rel in result[kind][:20]:
                lines.append(f"      {label}: {rel}")
    lines.append("identical: the rerun reproduced every output byte for byte"
                 if report["identical"] else
                 f"NOT identical; the recorded outputs are kept in {report['recorded_copy']}")
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)

"""Look before you download: on a fresh copy of the repository, without any download, the
paper's plan and DAG are shown (the missing downloads listed) and a real run refuses; the
Snakefiles are formatted (snakefmt) and lint-clean (`snakemake --lint`) with the demo and
the paper config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, SNAKEMAKE
from tests.test_config import _job_counts

SNAKEFMT = SNAKEMAKE.with_name("snakefmt")


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked, plus new files not yet
    committed; nothing ignored: no data, weights, results or virtual environments)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if rel.split("/")[0].startswith(".venv") or not source.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / rel)
    return dest


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_copy(tmp_path_factory.mktemp("clone"))


def snakemake_in(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNAKEMAKE), *args], cwd=checkout, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


def test_plan_before_downloads_then_a_real_run_refuses(clone: Path) -> None:
    """Without the downloads, the paper's plan and DAG are shown (the missing downloads
    listed); a real run that needs them stops before any job, naming every one."""
    paper = yaml.safe_load((clone / "config.yaml").read_text())
    keys = [f"datasets.{name}.archives[{i}].path" for name, source in paper["datasets"].items()
            for i, _ in enumerate(source["archives"])]
    plan = snakemake_in(clone, "-n", "--quiet", "rules")
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = _job_counts(plan.stdout + plan.stderr)
    assert counts.get("missing_downloads") == 1 and counts.get("verify_downloads") == 4, counts
    assert counts.get("train") == len(paper["training"]["settings"]), counts
    assert all(key in plan.stderr for key in keys), plan.stderr[-3000:]
    dag = snakemake_in(clone, "--dag")
    assert dag.stdout.lstrip().startswith("digraph") and "missing_downloads" in dag.stdout
    run = snakemake_in(clone, "--cores", "1")
    assert run.returncode != 0
    refusal = run.stdout + run.stderr
    assert "this run needs the dataset downloads" in refusal
    assert all(key in refusal for key in keys), refusal[-3000:]
    assert "Finished job" not in refusal and not (clone / "logs").exists()


def test_snakefiles_are_formatted() -> None:
    proc = subprocess.run([str(SNAKEFMT), "--check", "Snakefile", "rules/"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_fresh_copy_has_no_downloads(clone: Path) -> None:
    assert (clone / "Snakefile").is_file() and (clone / "rules" / "helpers").is_dir()
    assert not (clone / "downloads").exists() and not (clone / "resources").exists()


@pytest.mark.parametrize("config", [[], ["--configfile", "config.demo.yaml"]],
                         ids=["paper", "demo"])
def test_lint_is_clean(clone: Path, config: list[str]) -> None:
    proc = snakemake_in(clone, *config, "--lint")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_conda_environment_of_the_rules_is_the_lock_of_the_image(kind: str) -> None:
    """Every rule names envs/<kind>.yaml beside its container (rules/common.smk conda_for):
    the image's Python and exactly the lock file the image (gpu) or .venv (cpu) installs."""
    env = yaml.safe_load((REPO / "envs" / f"{kind}.yaml").read_text())
    image_python = re.search(r"uv python install (\S+)",
                             (REPO / "containers" / "overlearning-gpu.def").read_text()).group(1)
    assert f"python={image_python}" in env["dependencies"]
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip == [f"-r {kind}.lock.txt"] and (REPO / "envs" / f"{kind}.lock.txt").is_file()

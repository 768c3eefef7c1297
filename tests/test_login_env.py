"""The light login-node environment (envs/login.lock.txt, `make env-login`) can drive the study.

Snakemake parses the Snakefile and rules/ on the login node: everything they import at
parse time must come from the login lock (Snakemake, the SLURM plugin, jsonschema, PyYAML),
never torch, numpy, PIL or scipy, which live only in the image. The pins must be the ones
the full CPU lock uses, so both environments run the same Snakemake.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LOGIN_LOCK = REPO / "envs" / "login.lock.txt"
CPU_LOCK = REPO / "envs" / "cpu.lock.txt"
# In envs/cpu.lock.txt but not in the login lock: a parse-time import of any of them would
# fail on a login node.
HEAVY = ("torch", "torchvision", "timm", "numpy", "PIL", "scipy", "cv2", "sklearn",
         "matplotlib", "safetensors", "faiss", "transformers", "tqdm", "pandas")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"{path.name}: {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_login_lock_is_small_and_matches_the_cpu_lock() -> None:
    login, cpu = _pins(LOGIN_LOCK), _pins(CPU_LOCK)
    for required in ("snakemake", "snakemake-executor-plugin-slurm", "jsonschema", "pyyaml"):
        assert required in login, required
    assert "torch" not in login and "torchvision" not in login
    different = {name: (version, cpu.get(name)) for name, version in login.items()
                 if cpu.get(name) != version}
    assert not different, f"login pins differ from envs/cpu.lock.txt: {different}"


def _parse_time_imports() -> list[str]:
    """Modules the Snakefile and rules/*.smk import at the top level (parse time)."""
    modules: list[str] = []
    for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        for line in path.read_text().splitlines():
            found = re.match(r"(?:from\s+([\w.]+)\s+import\b|import\s+([\w.]+))", line)
            if found:
                modules.append(found.group(1) or found.group(2))
    return modules


def test_workflow_parse_time_imports_pull_nothing_heavy() -> None:
    modules = _parse_time_imports()
    assert "overlearning.workflow.config" in modules  # the parse really does import it
    code = ("import importlib, json, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_light_env_dry_runs_the_paper(tmp_path: Path) -> None:
    """With `make env-login` built: the paper's plan through profiles/slurm in that env."""
    snakemake = REPO / ".venv-login" / "bin" / "snakemake"
    if not snakemake.exists():
        pytest.skip("no .venv-login here (build it with `make env-login`)")
    import yaml

    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    for dataset in paper["datasets"].values():
        for archive in dataset["archives"]:
            (tmp_path / archive["path"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / archive["path"]).touch()
    env = {"PATH": f"{snakemake.parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
           "HOME": str(tmp_path)}
    proc = subprocess.run([str(snakemake), "-s", str(REPO / "Snakefile"),
                           "--profile", str(REPO / "profiles" / "slurm"), "-n", "--quiet", "rules"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert re.search(r"^train\s+\d+", proc.stdout, re.M), proc.stdout[-2000:]
    size = sum(p.stat().st_size for p in (REPO / ".venv-login").rglob("*")
               if p.is_file() and not p.is_symlink())
    assert size < 300 * 2**20, f"login environment is {size / 2**20:.0f} MB"

"""docs/hpc.md is runnable and agrees with config.yaml and profiles/slurm.

The blocks fenced as ```bash test-hpc:<name> are run verbatim against the local SLURM
cluster by tests/test_slurm.py (in the same cluster session as the rest of the SLURM
test); this module holds their extraction and the checks that need no cluster: the blocks
parse as bash, use only the documented site variables, and the per-rule resources table
says what config.yaml and the profile ask for.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.conftest import REPO

HPC_DOC = REPO / "docs" / "hpc.md"
# The order the tested blocks must appear in (and run in): a first day.
BLOCK_ORDER = ["cluster", "weights", "plan", "preflight", "launch", "logs"]
# Site-specific values the reader sets once (docs/hpc.md, top); the test sets them too.
SITE_VARIABLES = {"ACCOUNT", "CPU_PARTITION", "GPU_PARTITION"}
# Set by SLURM inside a job, or by a block itself.
OTHER_VARIABLES = {"SLURM_CPUS_ON_NODE", "CUDA_VISIBLE_DEVICES", "RUN_ID"}


def doc_blocks(text: str | None = None) -> list[tuple[str, str]]:
    """(name, script) of every ```bash test-hpc:<name> block, in document order."""
    text = HPC_DOC.read_text() if text is None else text
    return [(m.group(1), m.group(2))
            for m in re.finditer(r"^```bash test-hpc:(\w+)\n(.*?)^```$", text, re.S | re.M)]


def resources_table(text: str | None = None) -> list[dict]:
    """Rows of the table between <!-- resources-table --> markers."""
    text = HPC_DOC.read_text() if text is None else text
    body = text.split("<!-- resources-table -->", 1)[1].split("<!-- /resources-table -->", 1)[0]
    rows = []
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key, rules, where, threads, mem, gpus, minutes = cells
        rows.append({"key": key.split("`")[1], "rules": re.findall(r"`(\w+)`", rules),
                     "local": where == "login node", "threads": int(threads),
                     "mem_mb": int(mem), "gpu": int(gpus),
                     "runtime": int(minutes.split()[0]), "estimate": "estimate" in minutes})
    return rows


def table_by_rule() -> dict[str, dict]:
    by_rule: dict[str, dict] = {}
    for row in resources_table():
        for rule in row["rules"]:
            assert rule not in by_rule, f"{rule} appears twice in the resources table"
            by_rule[rule] = row
    return by_rule


def workflow_gpu_rules() -> set[str]:
    """Rules the workflow profile (profiles/default) gives a GPU."""
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    return {rule for rule, res in profile["set-resources"].items() if res.get("gpu")}


def _snakefiles() -> str:
    return "\n".join(p.read_text() for p in [REPO / "Snakefile",
                                             *sorted((REPO / "rules").glob("*.smk"))])


def local_rule_names() -> set[str]:
    """Rules named in a `localrules:` directive of the Snakefile or rules/*.smk."""
    names: set[str] = set()
    for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,?[ \t]*\n)+)", _snakefiles(), re.M):
        names |= set(re.findall(r"\w+", block))
    return names


def test_tested_blocks_are_there_in_order_and_parse() -> None:
    blocks = doc_blocks()
    assert [name for name, _ in blocks] == BLOCK_ORDER
    for name, script in blocks:
        check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, (name, check.stderr)


def test_blocks_use_only_documented_variables() -> None:
    text = HPC_DOC.read_text()
    exported = set(re.findall(r"^export (\w+)=", text, re.M)) | set(
        re.findall(r"^export .*?\b(\w+)=", text, re.M))
    assert SITE_VARIABLES <= exported, SITE_VARIABLES - exported
    for name, script in doc_blocks():
        used = set(re.findall(r"\$\{?(\w+)", script))
        unknown = used - SITE_VARIABLES - OTHER_VARIABLES
        assert not unknown, f"block {name} uses undocumented variables {unknown}"


def test_nothing_site_specific_in_the_tested_blocks() -> None:
    for name, script in doc_blocks():
        assert "/scratch" not in script and "my_project" not in script, name


def test_resources_table_matches_config_and_profile() -> None:
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    snakefiles = _snakefiles()
    gpu_rules = workflow_gpu_rules()
    local_rules = local_rule_names()
    rows = resources_table()
    assert rows
    for row in rows:
        expected = paper["resources"][row["key"]]
        assert row["mem_mb"] == expected["mem_mb"], row["key"]
        # An estimated run time is marked as such; its number is the plan's
        # (tests/test_slurm_profile.py compares the plan with this table).
        assert row["estimate"] == (expected["runtime"] == "estimate"), row["key"]
        if not row["estimate"]:
            assert row["runtime"] == expected["runtime"], row["key"]
        for rule in row["rules"]:
            body = re.search(rf"^rule {rule}:\n(.*?)(?=^\S|\Z)", snakefiles, re.S | re.M)
            assert body, f"rule {rule} of the table is not defined"
            # Threads from the row's key, or a fixed number the rule sets itself.
            fixed = re.search(r"^    threads: (\d+)$", body.group(1), re.M)
            threads = int(fixed.group(1)) if fixed else expected["threads"]
            assert row["threads"] == threads, (rule, row["threads"], threads)
            assert (rule in local_rules) == row["local"], rule
            assert (rule in gpu_rules) == (row["gpu"] == 1), rule
            # Each rule takes its numbers from the key its row names.
            keys = set(re.findall(r'(?:threads|mem|runtime)_for\("(\w+)"\)', body.group(1)))
            assert keys == {row["key"]}, (rule, keys)
    documented = set(table_by_rule())
    assert gpu_rules <= documented and local_rules <= documented


def test_memory_table_markers_are_there() -> None:
    text = HPC_DOC.read_text()
    for name in ("rehearsal-memory", "scale-files", "scale-rules", "scale-growth", "scale-check"):
        assert text.count(f"<!-- {name}:start -->") == 1, name
        assert text.count(f"<!-- {name}:end -->") == 1, name


def rehearsal_rows() -> dict[str, dict[str, int]]:
    """{rule: {peak, suggested}} of the memory table that `make rehearse` wrote."""
    body = HPC_DOC.read_text().split("<!-- rehearsal-memory:start -->", 1)[1]
    body = body.split("<!-- rehearsal-memory:end -->", 1)[0]
    rows = {}
    for line in body.strip().splitlines()[2:]:
        if not line.startswith("|"):
            continue  # the note naming the data-bound rules left out
        rule, _, peak, _, _, suggested = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[rule] = {"peak": int(peak), "suggested": int(suggested)}
    return rows


def marked_table(name: str) -> list[dict[str, str]]:
    """Rows of the Markdown table between <!-- scale-<name>:start/end -->, keyed by header."""
    body = HPC_DOC.read_text().split(f"<!-- scale-{name}:start -->", 1)[1]
    body = body.split(f"<!-- scale-{name}:end -->", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip().strip("|").split("|")),
                     strict=True)) for line in lines[2:]]


def test_every_rule_is_measured_by_the_rehearsal_or_at_scale() -> None:
    rows = rehearsal_rows()
    scale = {row["rule"] for row in marked_table("rules")}
    by_rule = table_by_rule()
    # Both runs ran the whole graph: every rule that runs as a job has a row in one of them.
    assert set(by_rule) - {"all"} <= set(rows) | scale, set(by_rule) - set(rows) - scale


def test_every_memory_request_covers_the_rehearsal_peak() -> None:
    """The rehearsal at paper model size measured each rule's peak: the memory a SLURM job of
    that rule asks for (config.yaml resources, through the profile) covers the suggestion."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    by_rule = table_by_rule()
    for rule, measured in rehearsal_rows().items():
        if rule == "demo_downloads":  # the rehearsal's own data generator, not a paper rule
            continue
        key = by_rule[rule]["key"]
        assert paper["resources"][key]["mem_mb"] >= measured["suggested"], (rule, key, measured)


def test_every_memory_request_covers_the_scale_peak() -> None:
    """The scale rehearsal measured each rule at the published data counts (or a fraction,
    extrapolated): every request covers the suggestion from that peak."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    by_rule = table_by_rule()
    rows = marked_table("rules")
    assert rows
    for row in rows:
        key = by_rule[row["rule"]]["key"]
        assert paper["resources"][key]["mem_mb"] >= int(row["suggested mem_mb"]), (key, row)


def test_every_cpu_job_fits_its_runtime_at_the_published_counts() -> None:
    """A CPU rule's longest job at the published counts (CPU seconds, measured or
    extrapolated with its growth) fits the run time its SLURM job asks for."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    by_rule = table_by_rule()
    for row in marked_table("growth"):
        where = by_rule[row["rule"]]
        if where["local"] or where["gpu"]:
            continue  # login node: no limit; GPU rules ran tiny models here
        seconds = int(row["longest job at the published counts (CPU s)"])
        assert paper["resources"][where["key"]]["runtime"] * 60 >= seconds, (row["rule"], seconds)


def test_doc_orders_the_image_before_the_weights() -> None:
    text = HPC_DOC.read_text()
    assert text.index("## 2. The container image") < text.index("## 4. Weights")
    assert text.index("make container") < text.index("snakemake --profile profiles/slurm weights")


def test_launch_block_is_the_documented_one_command() -> None:
    (launch,) = [script for name, script in doc_blocks() if name == "launch"]
    assert launch.strip() == "snakemake --profile profiles/slurm"
    assert Path(REPO / "profiles" / "slurm" / "config.yaml").is_file()

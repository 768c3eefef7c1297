"""The scale rehearsal's measuring pieces: the strace shim that counts a job's opens, and the
growth fit.

The shim is run as `make scale` runs it: first on PATH as `python`, the job's standard
output redirected to its log inside the run folder. The job below opens known files in
known modes, in itself and in a forked child, so the counts are known in advance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from scale import _commit, check_table, collect, growth, same_workflow, slope  # noqa: E402

JOB = textwrap.dedent("""
    import os
    for name in ("a.txt", "b.txt"):
        with open(name, "w") as handle:           # 2 writes
            handle.write(name)
    open("a.txt").read()                          # 3 reads of 2 files
    open("a.txt").read()
    open("b.txt").read()
    os.listdir("folder")                          # a folder listing
    pid = os.fork()
    if pid == 0:                                  # the child's read counts too
        open("b.txt").read()
        os._exit(0)
    os.waitpid(pid, 0)
    open("/etc/hostname").read() if os.path.exists("/etc/hostname") else None
""")


def run_through_shim(root: Path, log: Path) -> subprocess.CompletedProcess:
    env = {**os.environ,
           "PATH": f"{REPO / 'bench' / 'scale_shim'}:{Path(sys.executable).parent}:"
                   + os.environ["PATH"],
           "SCALE_ROOT": str(root), "SCALE_PYTHON": sys.executable,
           "SCALE_COUNTER": str(REPO / "bench" / "open_counter.py"),
           "SCALE_OPENS": str(root / "opens")}
    (root / "job.py").write_text(JOB)
    (root / "folder").mkdir(exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    # The program is passed with -c (read by bash, outside the trace), so the interpreter
    # opens no run file of its own.
    return subprocess.run(["bash", "-c", f'python -c "$(cat job.py)" > {log} 2>&1'], cwd=root,
                          env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def traced(tmp_path: Path) -> Path:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (apt-get install strace): opens cannot be counted")
    probe = subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here (ptrace not permitted): {probe.stderr!r}")
    return tmp_path


def test_shim_counts_the_jobs_opens_in_the_run_folder(traced: Path) -> None:
    result = run_through_shim(traced, traced / "logs" / "rule_x" / "all.log")
    assert result.returncode == 0, (result.stderr, (traced / "logs/rule_x/all.log").read_text())
    counts = json.loads((traced / "opens" / "logs" / "rule_x" / "all.json").read_text())
    # 3 reads here and 1 in the forked child, of 2 files.
    assert counts["run_writes"] == 2
    assert counts["run_reads"] == 4
    assert counts["run_files_read"] == 2
    assert counts["run_folders"] == 1
    # The interpreter's own files and /etc are opens, not run files.
    assert counts["opens"] > counts["run_reads"] + counts["run_writes"] + counts["run_folders"]


def test_output_not_going_to_a_log_in_the_run_folder_runs_untraced(traced: Path) -> None:
    outside = traced.parent / f"{traced.name}-elsewhere.log"
    result = run_through_shim(traced, outside)
    assert result.returncode == 0
    assert not (traced / "opens").exists()


def test_slope_is_the_log_log_growth() -> None:
    assert slope([(1 / 16, 1.0), (1 / 4, 4.0), (1.0, 16.0)]) == pytest.approx(1.0)
    assert slope([(1 / 16, 5.0), (1 / 4, 5.0)]) == pytest.approx(0.0)
    assert slope([(1 / 16, 1.0), (1 / 4, 16.0)]) == pytest.approx(2.0)
    assert slope([(1 / 16, 3.0)]) is None


def result(fraction: float, peak: float, cpu: float, commit: str | None = None) -> dict:
    rule = {"cpu_s": cpu, "peak_max_rss_mb": peak, "files_written": 1, "run_reads": 10,
            "longest_job_cpu_s": cpu, "longest_job_s": max(cpu, 0.2)}
    return {"fraction": str(fraction), "fraction_value": fraction, "rules": {"r": rule},
            "files_total": 1, "bytes_total": 1, "run_wall_s": 1, "commit": commit}


def test_growth_extrapolates_memory_and_time_to_the_published_counts() -> None:
    grown = growth([result(1 / 16, 100.0, 10.0, "abc1234"),
                    result(1 / 4, 200.0, 40.0, "abc1234")])["rules"]["r"]
    assert grown["memory_exponent"] == pytest.approx(0.5)
    assert grown["time_exponent"] == pytest.approx(1.0)
    assert grown["peak_mb_at_published"] == 400      # 200 MB x 4 ** 0.5
    assert grown["longest_job_cpu_s_at_published"] == 160
    assert grown["suggested_mem_mb"] == 2000         # 400 x 1.5 + 1000, to whole GB


def test_cpu_time_is_extrapolated_at_least_linearly() -> None:
    """A slope flattened by fixed costs (0.5 here) does not shrink the published estimate
    below the linear one; a steeper slope (2) is followed."""
    flat = growth([result(1 / 16, 100.0, 20.0, "abc1234"),
                   result(1 / 4, 100.0, 40.0, "abc1234")])["rules"]["r"]
    assert flat["time_exponent"] == pytest.approx(0.5)
    assert flat["longest_job_cpu_s_at_published"] == 160          # 40 s x 4, not x 2
    steep = growth([result(1 / 16, 100.0, 10.0, "abc1234"),
                    result(1 / 4, 100.0, 160.0, "abc1234")])["rules"]["r"]
    assert steep["longest_job_cpu_s_at_published"] == 2560        # 160 s x 4 ** 2


def test_extrapolation_follows_the_slope_between_the_two_largest_fractions() -> None:
    """Fixed costs flatten the slope over all fractions (here 1 s at 1/64 and 1/16): the
    published estimate follows the quadratic growth between 1/16 and 1/4."""
    grown = growth([result(1 / 64, 100.0, 1.0, "abc1234"), result(1 / 16, 100.0, 1.0, "abc1234"),
                    result(1 / 4, 100.0, 16.0, "abc1234")])["rules"]["r"]
    assert grown["time_exponent"] == pytest.approx(1.0)           # least squares over three
    assert grown["time_exponent_largest"] == pytest.approx(2.0)
    assert grown["longest_job_cpu_s_at_published"] == 256         # 16 s x 4 ** 2


def test_memory_of_jobs_too_short_to_be_sampled_is_not_fitted() -> None:
    """A job that ended within a second reports its shell's few MB: fitted against a sampled
    peak, that slope would extrapolate gigabytes."""
    short, sampled = result(1 / 16, 3.0, 0.4, "abc1234"), result(1 / 4, 400.0, 30.0, "abc1234")
    grown = growth([short, sampled])["rules"]["r"]
    assert grown["memory_exponent"] is None
    assert grown["time_exponent"] is not None
    assert grown["peak_mb_measured"] == 400
    assert "peak_mb_at_published" not in grown
    assert grown["suggested_mem_mb"] == 2000         # 400 x 1.5 + 1000, to whole GB


def test_the_published_count_run_checks_what_the_smaller_fractions_predicted() -> None:
    """Fitted on 1/16 and 1/4 alone, the prediction for the published counts is 160 CPU s
    (40 s x 4) and 400 MB (200 MB x 4 ** 0.5); the run there measured 80 s and 600 MB."""
    small = [result(1 / 16, 100.0, 10.0, "abc1234"), result(1 / 4, 200.0, 40.0, "abc1234")]
    grown = growth([*small, result(1.0, 600.0, 80.0, "abc1234")])
    assert grown["held_out"]["fractions"] == ["0.0625", "0.25"]
    assert grown["held_out"]["rules"]["r"] == {
        "longest_job_cpu_s": 80.0, "longest_job_cpu_s_predicted": 160, "cpu_ratio": 0.5,
        "peak_mb": 600, "peak_mb_predicted": 400, "peak_ratio": 1.5}
    # The published counts' own measurement is what the requests are sized on.
    assert grown["rules"]["r"]["peak_mb_at_published"] == 600
    assert "| r | 80 | 160 | 0.50 | 600 | 400 | 1.50 |" in check_table(grown)
    assert "Predicted from 1/16, 1/4 without" in check_table(grown)


def test_nothing_is_checked_without_a_run_at_the_published_counts() -> None:
    grown = growth([result(1 / 64, 50.0, 3.0, "abc1234"), result(1 / 16, 100.0, 10.0, "abc1234"),
                    result(1 / 4, 200.0, 40.0, "abc1234")])
    assert "held_out" not in grown
    assert "nothing to check" in check_table(grown)
    # One smaller fraction fits no slope: nothing is predicted from it.
    alone = growth([result(1 / 4, 200.0, 40.0, "abc1234"), result(1.0, 600.0, 80.0, "abc1234")])
    assert "held_out" not in alone


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def new_repo(tmp_path: Path) -> Path:
    """An empty git repository with rules/ and docs/ folders."""
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    (repo / "docs").mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    return repo


def test_only_runs_of_the_same_workflow_code_are_fitted(tmp_path: Path) -> None:
    """Commits that change only the docs ran the same workflow; a change below rules/ does
    not, and a dirty run matches nothing else: those runs are listed, not fitted."""
    repo = new_repo(tmp_path)
    commits = []
    for path, text in (("rules/a.smk", "one"), ("docs/a.md", "doc"), ("rules/a.smk", "two")):
        (repo / path).write_text(text)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", path)
        commits.append(git(repo, "rev-parse", "--short", "HEAD"))
    first, docs_only, changed = commits
    assert same_workflow(first, docs_only, repo)
    assert not same_workflow(first, changed, repo)
    assert not same_workflow(f"{first}-dirty", f"{first}-dirty", repo)
    assert not same_workflow(first, "0000000", repo)               # unknown to this clone

    grown = growth([result(1 / 64, 100.0, 1.0, changed), result(1 / 16, 100.0, 10.0, first),
                    result(1 / 4, 100.0, 160.0, docs_only)], repo)
    assert grown["fractions"] == ["0.0625", "0.25"]
    assert grown["not_fitted"] == [f"0.015625 ({changed})"]
    assert grown["rules"]["r"]["time_exponent"] == pytest.approx(2.0)


def test_a_run_is_dirty_only_when_the_workflow_code_is(tmp_path: Path) -> None:
    """The doc step of one fraction rewrites docs/ and bench-results/: the next fraction run
    in the same clone still ran the commit; a changed or new file below rules/ did not."""
    repo = new_repo(tmp_path)
    (repo / "rules" / "a.smk").write_text("one")
    (repo / "docs" / "hpc.md").write_text("table")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    head = git(repo, "rev-parse", "--short", "HEAD")
    assert _commit(repo) == head
    (repo / "docs" / "hpc.md").write_text("rewritten table")
    (repo / "bench-results").mkdir()
    (repo / "bench-results" / "scale-1-4.json").write_text("{}")
    assert _commit(repo) == head
    (repo / "rules" / "b.smk").write_text("new rule")
    assert _commit(repo) == f"{head}-dirty"
    (repo / "rules" / "b.smk").unlink()
    (repo / "rules" / "a.smk").write_text("two")
    assert _commit(repo) == f"{head}-dirty"


def test_wall_time_is_the_sum_of_the_runs_sessions(tmp_path: Path) -> None:
    """A run continued with SCALE_KEEP=1 has one start and one end line per session."""
    run = tmp_path / "run"
    (run / "logs" / "benchmarks" / "x").mkdir(parents=True)
    (run / "logs" / "benchmarks" / "x" / "a.tsv").write_text(
        "s\th:m:s\tmax_rss\tcpu_time\n2.0\t0:00:02\t50.0\t1.5\n")
    (run / "opens" / "logs" / "x").mkdir(parents=True)
    (run / "opens" / "logs" / "x" / "a.json").write_text(json.dumps(
        {"opens": 3, "run_reads": 1, "run_writes": 1, "run_folders": 0, "run_files_read": 1}))
    (run / "summary.tsv").write_text("output_file\trule\ndata/x\tx\n")
    (run / "start").write_text("100\n1000\n")
    (run / "end").write_text("150\n")
    assert collect(run, Fraction(1, 16))["run_wall_s"] is None      # a session still open
    (run / "end").write_text("150\n1110\n")
    result = collect(run, Fraction(1, 16))
    assert (result["run_wall_s"], result["run_sessions"]) == (160, 2)

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Both create .venv from the pinned lock file when it is missing or out of date.

PYTHON ?= python3
VENV ?= .venv
LOCK := envs/cpu.lock.txt
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin
CORES ?= 2
# Rules call `python scripts/...`: the venv's interpreter must come first on PATH (inside a
# container the image's python is used instead).
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: env demo rehearse test test-fast bench lint dryrun clean-demo container verify-container

env: $(STAMP)

# pip's local wheel folder offers a CPU-only torch; the lock pins the PyPI build instead
# (torchvision's compiled ops need it). --no-deps: the lock is complete.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/demo --cores $(CORES)
	$(BIN)/snakemake --profile profiles/demo --report demo-run/report.html

# The paper's models at full size on stand-in weights in the published formats and a tiny
# generated dataset, every rule on the CPU (20-40 min); then the per-rule peak-memory table
# in docs/hpc.md from the rehearsal's benchmark files. See config.rehearse.yaml.
REHEARSE_BUNDLE := rehearse-run/weights-bundle
rehearse: $(STAMP) $(REHEARSE_BUNDLE)/.complete
	$(BIN)/snakemake --configfile config.rehearse.yaml --cores $(CORES) --rerun-incomplete \
		--printshellcmds --show-failed-logs
	$(BIN)/python scripts/benchmark_table.py --benchmarks rehearse-run/logs/benchmarks \
		--doc docs/hpc.md

$(REHEARSE_BUNDLE)/.complete: config.yaml config.rehearse.yaml overlearning/models/standins.py \
		overlearning/models/official.py
	$(BIN)/python scripts/make_standin_weights.py --config config.yaml config.rehearse.yaml \
		--out $(REHEARSE_BUNDLE)
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -x -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not slow and not slurm" tests

bench: $(STAMP)
	mkdir -p bench-results
	set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --out bench-results; done

lint: $(STAMP)
	$(BIN)/ruff check overlearning scripts tests bench

dryrun: $(STAMP)
	$(BIN)/snakemake -n --profile profiles/demo

clean-demo:
	rm -rf demo-run .snakemake

# Apptainer image for the cluster (needs apptainer; see docs/hpc.md), then its check
# against the GPU lock file.
container:
	containers/build.sh

verify-container: $(STAMP)
	$(BIN)/python scripts/verify_container.py --image containers/overlearning-gpu.sif \
		--def containers/overlearning-gpu.def --report containers/overlearning-gpu.sif.verify.json

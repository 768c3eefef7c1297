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

.PHONY: env env-login demo rehearse scale test test-fast bench lint dryrun clean-demo container verify-container

env: $(STAMP)

# pip's local wheel folder offers a CPU-only torch; the lock pins the PyPI build instead
# (torchvision's compiled ops need it). --no-deps: the lock is complete.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# The light login-node environment (docs/hpc.md): Snakemake and the SLURM plugin, no torch.
LOGIN_VENV ?= .venv-login
LOGIN_LOCK := envs/login.lock.txt

env-login: $(LOGIN_VENV)/.installed

$(LOGIN_VENV)/.installed: $(LOGIN_LOCK)
	test -x $(LOGIN_VENV)/bin/python || $(PYTHON) -m venv $(LOGIN_VENV)
	$(LOGIN_VENV)/bin/python -m pip install --no-deps --no-compile -r $(LOGIN_LOCK)
	$(LOGIN_VENV)/bin/python -m pip check
	touch $@

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/demo --cores $(CORES)
	$(BIN)/snakemake --profile profiles/demo --report demo-run/report.html

# The paper's models at full size on stand-in weights in the published formats and a tiny
# generated dataset, every rule on the CPU (about 45 min on 2 cores); then the per-rule
# peak-memory table in docs/hpc.md from the rehearsal's benchmark files, and the check that
# every rule's memory request covers it. See config.rehearse.yaml.
REHEARSE_BUNDLE := rehearse-run/weights-bundle
rehearse: $(STAMP) $(REHEARSE_BUNDLE)/.complete
	$(BIN)/snakemake --configfile config.rehearse.yaml --cores $(CORES) --rerun-incomplete \
		--printshellcmds --show-failed-logs
	$(BIN)/python scripts/benchmark_table.py --benchmarks rehearse-run/logs/benchmarks \
		--doc docs/hpc.md $(if $(wildcard bench-results/scale-growth.json),--scale-growth \
		bench-results/scale-growth.json)
	$(BIN)/python -m pytest -q tests/test_hpc_doc.py -k memory_request

$(REHEARSE_BUNDLE)/.complete: config.yaml config.rehearse.yaml overlearning/models/standins.py \
		overlearning/models/official.py overlearning/models/open_clip_trunk.py \
		overlearning/models/segformer.py
	$(BIN)/python scripts/make_standin_weights.py --config config.yaml config.rehearse.yaml \
		--out $(REHEARSE_BUNDLE)
	touch $@

# The scale rehearsal (docs/hpc.md "Scale rehearsal"): generated downloads at FRACTION of the
# published counts (1/64 the smallest; 1/16, 1/4 and 1 for the docs), then the whole graph
# on them with the demo's tiny models (config.demo.yaml + config.scale.yaml), each job's
# `python` run under strace to count the files it opens (bench/scale_shim); OpenMP threads
# wait passively (spinning threads burnt 10x the CPU of a torch step on a busy machine).
# Then bench-results/scale-<fraction>.json (per rule: time, peak memory, files and bytes
# written, files opened) and the tables in docs/hpc.md, and the check that every memory
# request covers the measured peaks. A new run starts from the downloads; SCALE_KEEP=1
# continues an interrupted one (stop it with a signal to snakemake alone, not to this recipe's
# shell; SIGTERM for a run started in the background, which ignores SIGINT: the session's end
# is recorded, and the run's wall time is the sum of its sessions; docs/hpc.md).
FRACTION ?= 1/16
SCALE_RUN := scale-run/$(subst /,-,$(FRACTION))
SCALE_ROOT := $(abspath $(SCALE_RUN))
SCALE_SNAKEMAKE := $(BIN)/snakemake --snakefile $(abspath Snakefile) --directory $(SCALE_RUN) \
	--configfile $(abspath config.demo.yaml) $(abspath config.scale.yaml)
scale: $(STAMP) $(SCALE_RUN)/downloads/.complete
	test "$(SCALE_KEEP)" = 1 || rm -rf $(addprefix $(SCALE_RUN)/,data results resources logs opens \
		.snakemake start end)
	date +%s >> $(SCALE_RUN)/start
	OMP_WAIT_POLICY=PASSIVE PATH=$(abspath bench/scale_shim):$$PATH SCALE_ROOT=$(SCALE_ROOT) \
		SCALE_PYTHON=$(abspath $(BIN)/python) SCALE_COUNTER=$(abspath bench/open_counter.py) \
		SCALE_OPENS=$(SCALE_ROOT)/opens \
		$(SCALE_SNAKEMAKE) --cores $(CORES) --scheduler greedy --rerun-incomplete --printshellcmds \
		--show-failed-logs; status=$$?; date +%s >> $(SCALE_RUN)/end; exit $$status
	$(SCALE_SNAKEMAKE) --summary > $(SCALE_RUN)/summary.tsv
	$(BIN)/python bench/scale.py collect --run $(SCALE_RUN) --fraction $(FRACTION) --out bench-results
	$(BIN)/python bench/scale.py doc --results bench-results --doc docs/hpc.md \
		--before bench-results/before-packs
	$(BIN)/python -m pytest -q tests/test_hpc_doc.py -k "memory_request or runtime or measured"

$(SCALE_RUN)/downloads/.complete: overlearning/demo/scale.py overlearning/demo/vis.py \
		overlearning/demo/persons.py overlearning/demo/draw.py scripts/make_scale_downloads.py
	$(BIN)/python scripts/make_scale_downloads.py --out $(SCALE_RUN)/downloads \
		--fraction $(FRACTION) --threads $(CORES)
	touch $@

# The real-SLURM test mostly waits on the cluster's polling: it runs beside the rest (its
# own cluster, no shared port), and each group's log is printed whole when both are done.
test: $(STAMP) $(LOGIN_VENV)/.installed
	mkdir -p .test-logs
	$(BIN)/python -m pytest -q -m slurm tests > .test-logs/slurm.log 2>&1 & slurm=$$!; \
	$(BIN)/python -m pytest -q -m "not slurm" tests > .test-logs/rest.log 2>&1; rest=$$?; \
	wait $$slurm; slurm_rc=$$?; \
	echo "== SLURM tests (exit $$slurm_rc)"; cat .test-logs/slurm.log; \
	echo "== other tests (exit $$rest)"; cat .test-logs/rest.log; \
	test $$slurm_rc -eq 0 && test $$rest -eq 0

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not slow and not slurm" tests

bench: $(STAMP)
	mkdir -p bench-results
	set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --out bench-results; done

# snakemake --lint with the paper config works before any download (they are listed).
lint: $(STAMP)
	$(BIN)/ruff check overlearning scripts tests bench
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --configfile config.demo.yaml --lint

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

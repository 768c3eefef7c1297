# Overlearned person re-identification: the whole study as one graph.
#
#   raw downloads -> frame-level JSON, split, foreground crops (YouTube-VIS, OVIS)
#   -> masked person sets and partial-person probes (CUHK03-NP, Market-1501)
#   -> training per loss setting (+ optional tuning)
#   -> detection (GroundingDINO) -> segmentation (SAM) -> index-exclusion JSON
#   -> embeddings once per (model, set) -> metrics per (model, evaluation, exclusion)
#   -> tables, figures, report; AttnLRP heat maps; anonymisation as a third safeguard.
#
# config.yaml holds the paper's settings; config.demo.yaml (profiles/demo) the demo's.

import os
import shutil
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


# The paper config sits beside this Snakefile; relative paths inside it resolve against the
# working directory, so a run can live anywhere (`--directory`).
configfile: os.path.join(workflow.basedir, "config.yaml")


# Scripts import the library from this checkout, also inside containers and SLURM jobs.
sys.path.insert(0, workflow.basedir)
# (update(), not item assignment: Snakemake's linter reads os.environ[<quoted name>] as a
# variable the user must set, and would ask for an envvars directive.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH", "")) if p)
)

from overlearning.workflow.config import (
    ConfigError,
    check_dataset_sources,
    config_hash,
    missing_downloads_message,
    validate_config,
)
from overlearning.workflow.provenance import CONFIG_HASH_ENV
from overlearning.workflow.report_graph import install as install_report_graph

# `snakemake --report`: the rule graph on the report's first page gets one node per rule.
install_report_graph()

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

# Provenance records which configuration made a result. Jobs read its hash from the
# environment (every job, local, SLURM or in a container, re-reads this Snakefile or
# inherits our environment), never from a param: a param holding the config would make
# any config edit -- a memory request, a figure option -- rerun every job that has it.
os.environ[CONFIG_HASH_ENV] = config_hash(config)

# Jobs run in Apptainer with --cleanenv (profiles/slurm), so that nothing of the submitting
# shell leaks in; Apptainer passes on the variables named <prefix><NAME> only: exactly what
# the jobs read (the library on PYTHONPATH, provenance, the job's GPUs).
CONTAINER_ENV = "APPTAINERENV_" if shutil.which("apptainer") else "SINGULARITYENV_"
os.environ[f"{CONTAINER_ENV}PYTHONPATH"] = workflow.basedir
for name in (
    CONFIG_HASH_ENV,
    "OVERLEARNING_GIT_COMMIT",
    "OVERLEARNING_GIT_DIRTY",
    "SLURM_JOB_ID",
    "SLURM_JOB_PARTITION",
    "CUDA_VISIBLE_DEVICES",
):
    if name in os.environ:
        os.environ[f"{CONTAINER_ENV}{name}"] = os.environ[name]


include: "rules/common.smk"


# Missing downloads do not stop the parse: `snakemake -n`, `--dag` and `--lint` show the
# plan before anything is fetched (rules/downloads.smk stands in for them), and a real run
# that needs one refuses at start, naming every one (onstart, rules/common.smk).
try:
    MISSING_DOWNLOADS = check_dataset_sources(config, produced=set(demo_download_paths()))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
if MISSING_DOWNLOADS and workflow.exec_mode == ExecMode.DEFAULT:
    print(f"Warning: {missing_downloads_message(MISSING_DOWNLOADS)}", file=sys.stderr)


include: "rules/demo.smk"
include: "rules/downloads.smk"
include: "rules/extract.smk"
include: "rules/datasets.smk"
include: "rules/weights.smk"
include: "rules/train.smk"
include: "rules/detect.smk"
include: "rules/exclusion.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/explain.smk"
include: "rules/anonymise.smk"


# Cheap CPU steps (tables, figures, the query grids and leak strips drawn from stored
# per-query evidence, gathering shard files: seconds each) run where Snakemake runs, not as
# SLURM jobs that would each wait in the queue. None of them searches or ranks
# (tests/test_layout.py checks it); the embedding map projects embeddings, so it is a job.
localrules:
    gather_detections,
    tables,
    privacy_utility,
    roc_curves,
    query_grid,
    leaks,
    anonymisation_tables,
    anonymisation_privacy_utility,
    tables_html,
    anonymisation_tables_html,
    exclusion_counts,
    training_table,
    tune,
    tuning_report,


rule all:
    default_target: True
    input:
        dataset_targets(),
        training_targets(),
        detection_targets(),
        exclusion_targets(),
        evaluation_targets(),
        table_targets(),
        explain_targets(),
        anonymisation_targets(),

# Names and input-choosing helpers shared by every stage. No logic beyond paths.

import json
import os
import shlex
import shutil
import sys

from snakemake_interface_executor_plugins.settings import DeploymentMethod, ExecMode

from overlearning.workflow.estimates import epoch_runtime_minutes, trials_per_worker
from overlearning.workflow.preflight import PlannedJob, partition_file_of, preflight

DATA = config["paths"]["data"]
RESULTS = config["paths"]["results"]
LOGS = config["paths"]["logs"]
WEIGHTS = config["weights"]["cache"]

PERSON_SETS = {
    "cuhk03_labeled": f"{DATA}/cuhk03/labeled",
    "cuhk03_detected": f"{DATA}/cuhk03/detected",
    "market1501": f"{DATA}/market1501",
}
PROBES = ["torso"] + list(config["preparation"]["probes"]["occlusions"])
SETTINGS = list(config["training"]["settings"])
# Pretrained baselines: a trunk exactly as downloaded, evaluated like a trained setting
# (embeddings and metrics, no training), so the tables show re-ID before fine-tuning.
PRETRAINED = {f"pretrained_{key}": key for key in config["evaluation"]["pretrained"]}
EVALUATED = SETTINGS + list(PRETRAINED)
VIS_SPLITS = ["train", "valid", "test"]

# Report sections (the navigation menu of `snakemake --report`), numbered in
# reading order; every stage's rules mark their tables and figures with report().
REPORT_TABLES = "1 Study tables"
REPORT_FIGURES = "2 Study figures"
REPORT_GRIDS = "3 Query grids"
REPORT_EXPLAIN = "4 AttnLRP heat maps"
REPORT_ANON = "5 Anonymisation"
REPORT_TRAINING = "6 Training curves"
REPORT_TUNING = "7 Tuning trials"
REPORT_EXCLUSION = "8 Index exclusion counts"
REPORT_LEAKS = "9 Leaks: what the safeguards miss"


wildcard_constraints:
    dataset="youtube_vis|ovis|cuhk03|market1501",
    split="train|valid|test",
    person_set="|".join(PERSON_SETS),
    setting="|".join(EVALUATED),
    probe="[a-z_]+",


def log_path(rule_name, pattern="all"):
    return f"{LOGS}/{rule_name}/{pattern}.log"


def bench_path(rule_name, pattern="all"):
    return f"{LOGS}/benchmarks/{rule_name}/{pattern}.tsv"


def script(name):
    """Command prefix that runs one of the workflow's small programs."""
    return f"python {workflow.basedir}/scripts/{name}"


def demo_download_paths():
    if not config["demo"]["generate"]:
        return []
    return [a["path"] for ds in config["datasets"].values() for a in ds["archives"]]


# Downloads that cannot be read in place (tar in any compression) are extracted.
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz")


def reads_in_place(dataset):
    """Whether a dataset's downloads are all zips or plain files: read without extracting."""
    archives = config["datasets"][dataset].get("archives") or []
    return all(not a["path"].lower().endswith(TAR_SUFFIXES) for a in archives)


def raw_root(dataset):
    """Where a dataset's files are: the configured directory, the manifest of downloads read
    in place ({DATA}/raw/<name>.json: paths below it lead into the downloads), or our
    extraction."""
    directory = config["datasets"][dataset]["directory"]
    if directory:
        return directory
    return f"{DATA}/raw/{dataset}.json" if reads_in_place(dataset) else f"{DATA}/raw/{dataset}"


def raw_archives(dataset):
    return [a["path"] for a in config["datasets"][dataset]["archives"]]


def picked(section, *keys):
    """JSON of the named keys of a config section, for a script that takes a settings
    object. A job gets only the values it uses: a key added to the section for another
    rule (or a resources edit) leaves its params, and so the job, unchanged."""
    return json.dumps({key: section[key] for key in keys}, sort_keys=True)


# Where the GPU rules run (compute.device): each passes it as its `device` param, and its
# script's device guard stops the job in one line when cuda is asked for and not usable.
COMPUTE_DEVICE = config["compute"]["device"]


def rule_resources(key):
    return config["resources"].get(key, config["resources"]["default"])


def threads_for(key):
    return rule_resources(key)["threads"]


def mem_for(key):
    return rule_resources(key)["mem_mb"]


def runtime_for(key):
    """Minutes: as configured, or estimated from the epochs the job trains (`estimate`)."""
    runtime = rule_resources(key)["runtime"]
    if runtime != "estimate":
        return runtime
    tuning = config["tuning"]
    epochs = {
        "train": config["training"]["epochs"],
        "tune": trials_per_worker(tuning["trials"], tuning["workers"]) * tuning["epochs_per_trial"],
    }
    if key not in epochs:
        raise WorkflowError(f"resources.{key}.runtime: 'estimate' applies to train and tune only")
    return epoch_runtime_minutes(epochs[key], config["runtime_estimate"])


def container_for(kind):
    image = config["containers"][kind]
    return None if image in ("none", "") else image


def conda_for(kind):
    """The conda environment file of a rule's software (envs/<kind>.yaml: the lock file that
    the image of `containers.<kind>` installs), for `--sdm conda` where no container is used."""
    return f"{workflow.basedir}/envs/{kind}.yaml"


def model_manifest(key):
    """The manifest of one model's folder in the weights cache: a job's input for that model."""
    return f"{WEIGHTS}/{key}/manifest.json"


def weights_cache_of(manifest):
    """The weights cache folder that holds a model folder's manifest."""
    return os.path.dirname(os.path.dirname(manifest))


def weights_cache(wildcards, input):
    """A job's --cache: the folder holding the model folders of its `weights` input."""
    manifests = [input.weights] if isinstance(input.weights, str) else list(input.weights)
    return weights_cache_of(manifests[0])


# Planning on a login node without Apptainer (before the image is built, or where Apptainer
# is a module not yet loaded) must work: `snakemake -n --profile profiles/slurm` would
# otherwise stop at Snakemake's apptainer version check. Without the command, the main
# Snakemake process plans the same jobs with containers switched off, says so, and refuses
# to start a real run (onstart runs for real runs only, never for a dry-run).
APPTAINER_MISSING = (
    DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
    and any(container_for(kind) for kind in config["containers"])
    and workflow.exec_mode == ExecMode.DEFAULT
    and not (shutil.which("apptainer") or shutil.which("singularity"))
)
if APPTAINER_MISSING:
    workflow.deployment_settings.deployment_method = set(
        workflow.deployment_settings.deployment_method
    ) - {DeploymentMethod.APPTAINER}
    print(
        "No apptainer (or singularity) command on PATH: planning without containers; "
        "a real run needs it (docs/hpc.md, step 3).",
        file=sys.stderr,
    )


# Pre-flight (overlearning/workflow/preflight.py): the first thing a SLURM run does, in
# onstart, i.e. in the main Snakemake process once the DAG is built and before the first
# job is submitted; never in a dry-run (`-n` stays a look) and without adding a job to the
# graph (a rule every job depended on would make every output depend on it).
# OVERLEARNING_PREFLIGHT=only: check, print and stop (scripts/preflight.py);
# OVERLEARNING_PREFLIGHT=off: skip the check.
PREFLIGHT_ENV = "OVERLEARNING_PREFLIGHT"


def planned_jobs():
    return [
        PlannedJob(
            job.rule.name,
            job.threads,
            dict(job.resources.items()),
            job.is_local,
            dict(job.wildcards_dict),
        )
        for job in workflow.dag.needrun_jobs()
    ]


def run_preflight():
    jobs = list(workflow.dag.needrun_jobs())
    produced = {str(f) for job in jobs for f in job.output}
    apptainer = DeploymentMethod.APPTAINER in workflow.deployment_settings.deployment_method
    images = [image for kind in config["containers"] if (image := container_for(kind))]
    setting = getattr(workflow.executor_settings, "partition_config", None)
    checked = preflight(
        planned_jobs(), config, partition_file_of(setting), images if apptainer else [], produced
    )
    if APPTAINER_MISSING:
        checked.bad("image", "apptainer", "no apptainer or singularity command on PATH")
    print(checked.table(), checked.summary(), sep="\n", file=sys.stderr)
    return checked


# A real run that needs a dataset download not made yet (rules/downloads.smk) refuses
# before any job starts, naming every missing one; a run that needs none of them (the
# weights on the login node) goes ahead.
onstart:
    mode = os.environ.get(PREFLIGHT_ENV, "on")
    slurm = getattr(workflow.executor_plugin, "name", "") == "slurm"
    if mode == "only" and not slurm:
        print("pre-flight checks a SLURM run: give --profile profiles/slurm", file=sys.stderr)
        raise SystemExit(2)
    if slurm and mode != "off":
        checked = run_preflight()
        if mode == "only":
            raise SystemExit(1 if checked.problems else 0)
        if checked.problems:
            raise WorkflowError(checked.summary())
    if APPTAINER_MISSING:
        raise WorkflowError(
            "this run uses Apptainer containers (--sdm apptainer) but no "
            "apptainer or singularity command is on PATH; load or install "
            "it (docs/hpc.md, step 3), or look only with -n"
        )
    if MISSING_DOWNLOADS and any(
        job.rule.name == "missing_downloads" for job in workflow.dag.needrun_jobs()
    ):
        raise WorkflowError(
            f"this run needs the dataset downloads; {missing_downloads_message(MISSING_DOWNLOADS)}"
        )


def person_root(person_set):
    return PERSON_SETS[person_set]

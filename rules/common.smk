# Names and input-choosing helpers shared by every stage. No logic beyond paths.

import json
import shutil
import sys

from snakemake_interface_executor_plugins.settings import DeploymentMethod, ExecMode

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


def rule_resources(key):
    return config["resources"].get(key, config["resources"]["default"])


def threads_for(key):
    return rule_resources(key)["threads"]


def mem_for(key):
    return rule_resources(key)["mem_mb"]


def runtime_for(key):
    return rule_resources(key)["runtime"]


def container_for(kind):
    image = config["containers"][kind]
    return None if image in ("none", "") else image


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


onstart:
    if APPTAINER_MISSING:
        raise WorkflowError(
            "this run uses Apptainer containers (--sdm apptainer) but no "
            "apptainer or singularity command is on PATH; load or install "
            "it (docs/hpc.md, step 3), or look only with -n"
        )


def person_root(person_set):
    return PERSON_SETS[person_set]

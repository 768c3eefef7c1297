# Names and input-choosing helpers shared by every stage. No logic beyond paths.

import json

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
VIS_SPLITS = ["train", "valid", "test"]

wildcard_constraints:
    dataset="youtube_vis|ovis|cuhk03|market1501",
    split="train|valid|test",
    person_set="|".join(PERSON_SETS),
    setting="|".join(SETTINGS),
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


def raw_root(dataset):
    """Where a dataset's extracted files are: the configured directory or our extraction."""
    directory = config["datasets"][dataset]["directory"]
    return directory if directory else f"{DATA}/raw/{dataset}"


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


def person_root(person_set):
    return PERSON_SETS[person_set]

# Functions of rules/datasets.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def raw_path(dataset, key):
    """A configured path (images, annotations, masks) inside a dataset's extracted root."""
    return os.path.join(raw_root(dataset), config["datasets"][dataset][key])


def person_source(person_dir, key):
    dataset, folder = PERSON_SOURCES[PERSON_DIRS[person_dir]]
    return os.path.join(raw_path(dataset, key), folder)


def prepare_shell(name, args):
    """The shell command of a preparation program: its arguments, then the image flags every
    one of them takes (params IMAGE_PARAMS), its output to the job's log."""
    return f"{script(name)}{args}{IMAGE_FLAGS} > {{log}} 2>&1"


def person_raw_root(wildcards):
    return raw_root(PERSON_SOURCES[PERSON_DIRS[wildcards.person_dir]][0])


def dataset_targets():
    """Every prepared set: VIS splits and crops, OVIS crops, person sets and their probes."""
    targets = [f"{VIS}/{split}/instances.json" for split in VIS_SPLITS]
    targets += [f"{VIS}/{split}/{name}" for split in VIS_SPLITS for name in CROP_FILES]
    targets += [f"{OVIS_TEST}/instances.json"] + [f"{OVIS_TEST}/{name}" for name in CROP_FILES]
    for root in PERSON_SETS.values():
        targets += [f"{root}/{folder}.zip" for folder in PERSON_FOLDERS]
        targets += [f"{root}/probes/{probe}.zip" for probe in PROBES]
    return targets

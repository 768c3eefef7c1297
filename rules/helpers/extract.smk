# Functions of rules/extract.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def archive_checksums(dataset, algorithm):
    """One value per archive, '-' where the config gives none (the script's convention)."""
    return [a.get(algorithm) or "-" for a in config["datasets"][dataset]["archives"]]

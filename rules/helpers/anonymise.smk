# Functions of rules/anonymise.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def anon_detections(wildcards, exclusion_set):
    return [exclusion_json(exclusion_set)] if wildcards.anon_policy == "detected" else []


def anon_selection_flags(wildcards, input):
    flags = f"--selection {ANON_POLICIES[wildcards.anon_policy]}"
    return flags + (f" --exclusion {input.exclusion[0]}" if input.exclusion else "")


def anonymisation_metrics_files():
    """Rows of the comparison table in order (plans.AnonymisationPlan.metrics_files)."""
    return ANON_PLAN.metrics_files(SETTINGS)


def anonymised_sets():
    """Every anonymised set's files (deployment sets only where the detector ran on them)."""
    return ANON_PLAN.all_set_files()


def anonymisation_targets():
    tables = [
        f"{ANON_TABLES}/{stem}.{ext}" for stem in ("main", "reid") for ext in ("csv", "md", "tex")
    ]
    tables += [
        f"{ANON_TABLES}/details.csv",
        f"{ANON_TABLES}/headline.json",
        f"{ANON_TABLES}/headline.md",
    ]
    tables += [f"{ANON_TABLES}/{stem}.html" for stem in ANON_TABLE_STEMS]
    return (
        anonymised_sets()
        + anonymisation_metrics_files()
        + tables
        + [f"{FIGURES_DIR}/privacy_utility_anonymisation.png"]
    )


def anon_outputs(anon_set):
    """changed.zip, anonymised.json and exclusion.json of one anonymised set."""
    return ANON_PLAN.set_files("{anon_method}_{anon_strength}", anon_set)

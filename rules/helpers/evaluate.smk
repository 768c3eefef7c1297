# Functions of rules/evaluate.smk: the inputs, params and targets its rules choose.
# (Snakemake's --lint wants functions in their own snakefile, apart from rules.)


def attacker_settings():
    """The attackers and the parameters of those listed (evaluation.attackers): editing an
    unlisted attacker's parameters reruns nothing."""
    names = EVAL["attackers"]
    params = {name: EVAL["attacker_settings"][name] for name in names if name != "plain"}
    return json.dumps({"attackers": names, **params}, sort_keys=True)


def eval_trunk_json(wildcards):
    """The architecture of the setting's trunk (config models.<trunk>): all of it builds the model."""
    trunk = config["training"]["settings"][wildcards.setting]["trunk"]
    return json.dumps(config["models"][trunk], sort_keys=True)


def pretrained_trunk_json(wildcards):
    """The architecture of a pretrained baseline's trunk (config models.<key>)."""
    return json.dumps(config["models"][PRETRAINED[wildcards.setting]], sort_keys=True)


def embed_set_flag(out, kind, source, category, delta):
    """One --set of embed.py: where to write, what kind of set, its source, person category,
    the anonymised delta pack read over it (- for none)."""
    return (
        f"--set {shlex.quote(out)} {kind} {shlex.quote(source)} "
        f"{'-' if category is None else category} {shlex.quote(delta)}"
    )


def embed_flags(sets):
    return " ".join(embed_set_flag(*s) for s in sets)


def all_metrics_files():
    """Every metrics file, in table order: settings, then exclusion, then evaluations."""
    return EVAL_PLAN.metrics_files(EVALUATED)


def evaluation_targets():
    return all_metrics_files()

"""Names the rules, the library and the report must agree on.

Standard library only: the Snakefile and rules/ import these names while Snakemake parses
the workflow, which on a cluster happens on the login node in the light environment
(envs/login.lock.txt: Snakemake, the SLURM plugin, jsonschema, PyYAML; no numpy, PIL or
torch). tests/test_login_env.py checks that parsing the paper's graph imports nothing heavy.

Besides folder names, words for the workflow's keys, for figure titles, legends and table
headers: config keys (``ms_tv``, ``market1501_probe_torso``) are exact but mean nothing to a
reader of the report. Each title function turns one kind of key into a short phrase; an
unknown key is returned unchanged, so a new setting or evaluation still gets a label.
"""

from __future__ import annotations

import re

# Prepared person-set folder -> the raw dataset's folder it is made from (Market-1501 and
# CUHK03-NP layout).
PERSON_FOLDERS = {"foreground_query": "query", "foregroundImages_cropped": "bounding_box_test"}
# MGCAM masks of a raw folder live beside it as <folder>_seg.
MASK_FOLDER_SUFFIX = "_seg"


def variant_name(method: str, strength: float) -> str:
    """Folder name of one anonymisation policy: ``mosaic_24``, ``blur_12``, ``noise_0.5``."""
    return f"{method}_{float(strength):g}"



PERSON_SETS = {
    "market1501": "Market-1501",
    "cuhk03_labeled": "CUHK03-NP labeled",
    "cuhk03_detected": "CUHK03-NP detected",
}
PROBES = {
    "torso": "torso only",
    "upper_half": "upper half",
    "lower_half": "lower half",
    "left_half": "left half",
    "right_half": "right half",
    "clothes": "clothes only",
}
LOSSES = {
    "ms": "MultiSimilarity, no persons in training",
    "confusion": "confusion loss on persons",
    "center": "center loss on persons",
}
TRUNKS = {"tv": "torchvision ViT"}
ANON_POLICIES = {"detected": "detected persons", "gt": "all persons (oracle)"}
ANON_METHODS = {"mosaic": ("mosaic", "px blocks"), "blur": ("blur", "px σ"),
                "noise": ("noise", "σ")}


PRETRAINED_TRUNKS = {
    "timm_clip": "CLIP ViT-B/16 (timm, the study's trunk)",
    "open_clip_b16": "OpenAI CLIP ViT-B/16 (open_clip)",
    "torchvision_vit": "torchvision ViT-B/16 SWAG",
}


def setting_title(setting: str) -> str:
    """``confusion_tv`` -> ``confusion loss on persons (torchvision ViT)``;
    ``pretrained_timm_clip`` -> ``CLIP ViT-B/16 (timm, ...), as downloaded``."""
    if setting.startswith("pretrained_"):
        key = setting.removeprefix("pretrained_")
        return f"{PRETRAINED_TRUNKS.get(key, key)}, as downloaded (no fine-tuning)"
    base, _, trunk = setting.partition("_")
    if base not in LOSSES or (trunk and trunk not in TRUNKS):
        return setting
    return LOSSES[base] + (f" ({TRUNKS[trunk]})" if trunk else "")


def evaluation_title(evaluation: str) -> str:
    """``market1501_probe_torso`` -> ``Market-1501, torso only probe``."""
    if evaluation == "nonperson":
        return "non-person retrieval (utility)"
    if evaluation == "person":
        return "person queries, YouTube-VIS test"
    person_set, _, probe = evaluation.partition("_probe_")
    if person_set not in PERSON_SETS:
        return evaluation
    if not probe:
        return f"{PERSON_SETS[person_set]} re-ID"
    return f"{PERSON_SETS[person_set]}, {PROBES.get(probe, probe)} probe"


def safeguard_title(exclusion: str) -> str:
    """The test-time safeguard of a table row: ``none``, ``excluded``, ``anon_<policy>_<variant>``."""
    if exclusion == "none":
        return "no test-time safeguard"
    if exclusion == "excluded":
        return "index exclusion"
    match = re.fullmatch(r"anon_([a-z]+)_([a-z]+)_(.+)", exclusion)
    if not match or match[1] not in ANON_POLICIES or match[2] not in ANON_METHODS:
        return exclusion
    method, unit = ANON_METHODS[match[2]]
    return f"{method} {match[3]} {unit}, {ANON_POLICIES[match[1]]}"


ATTACKERS = {"plain": "plain nearest neighbours", "k_reciprocal": "k-reciprocal re-ranking",
             "alpha_qe": "alpha-weighted query expansion"}


def attacker_title(attacker: str) -> str:
    """How the operator searches: ``k_reciprocal`` -> ``k-reciprocal re-ranking``."""
    return ATTACKERS.get(attacker, attacker)


def column_title(column: str) -> str:
    """A table column: ``setting``/``exclusion``, an evaluation, or ``<evaluation> <metric>``."""
    fixed = {"setting": "training setting", "exclusion": "test-time safeguard",
             "safeguard": "test-time safeguard", "attacker": "attacker (search)",
             "evaluation": "evaluation"}
    if column in fixed:
        return fixed[column]
    evaluation, _, metric = column.partition(" ")
    title = evaluation_title(evaluation)
    return f"{title}: {metric}" if metric else title

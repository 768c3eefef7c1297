"""Folder and file names that the rules and the library must agree on.

Standard library only: the Snakefile and rules/ import these names while Snakemake parses
the workflow, which on a cluster happens on the login node in the light environment
(envs/login.lock.txt: Snakemake, the SLURM plugin, jsonschema, PyYAML; no numpy, PIL or
torch). tests/test_login_env.py checks that parsing the paper's graph imports nothing heavy.
"""

from __future__ import annotations

# Prepared person-set folder -> the raw dataset's folder it is made from (Market-1501 and
# CUHK03-NP layout).
PERSON_FOLDERS = {"foreground_query": "query", "foregroundImages_cropped": "bounding_box_test"}
# MGCAM masks of a raw folder live beside it as <folder>_seg.
MASK_FOLDER_SUFFIX = "_seg"


def variant_name(method: str, strength: float) -> str:
    """Folder name of one anonymisation policy: ``mosaic_24``, ``blur_12``, ``noise_0.5``."""
    return f"{method}_{float(strength):g}"

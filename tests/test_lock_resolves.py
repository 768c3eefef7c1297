"""Every pin of envs/gpu.lock.txt exists on the package index as a wheel the image can install.

The image (containers/overlearning-gpu.def) installs the lock with `uv pip install --no-deps`
into CPython 3.11 on Ubuntu 24.04 (glibc 2.39, x86_64). A pin without such a wheel (a version
that was never published, yanked files, an sdist only, wheels for other Pythons) breaks the
image build, usually on the cluster, hours later. This asks the index (PyPI's JSON simple
API, PEP 691: file names only, no downloads) for each pinned version's files and checks that
one of them is a wheel whose tags the image's interpreter supports.

Needs the network: marked `network`, and skipped only when the index cannot be reached at
all (the reason is printed); any other failure fails.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.conftest import REPO

pytestmark = pytest.mark.network

GPU_LOCK = REPO / "envs" / "gpu.lock.txt"
INDEX = os.environ.get("OVERLEARNING_INDEX_URL", "https://pypi.org/simple").rstrip("/")
ACCEPT = "application/vnd.pypi.simple.v1+json"
# The image: CPython 3.11, x86_64, glibc 2.39 (Ubuntu 24.04) -> manylinux_2_5 ... _2_39
# and the legacy aliases of those.
PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(39, 4, -1)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])
IMAGE_TAGS: set[Tag] = set(cpython_tags((3, 11), abis=["cp311", "abi3", "none"],
                                        platforms=PLATFORMS))
IMAGE_TAGS |= set(compatible_tags((3, 11), interpreter="cp311", platforms=PLATFORMS))
# Pins published only as source, for which no version at all has a wheel on the index
# (checked 2026-11-30). Each is plain Python (setup.py, no compiled extension: for
# groundingdino-py 0.4.0 the C++/CUDA op is commented out of setup.py), which uv builds with
# setuptools while the image is built. The test fails when one gains a wheel (drop it here)
# or loses its sdist.
SOURCE_ONLY = {
    "connection_pool": "Snakemake's dependency; 0.0.3 is an sdist (0.0.1/0.0.2 had wheels)",
    "groundingdino-py": "every release is an sdist; pure Python since 0.4.0",
    "lxt": "AttnLRP; the 2.x releases are sdists",
}


def lock_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            pins[name.strip()] = version.strip()
    return pins


def _files(name: str) -> list[dict]:
    request = urllib.request.Request(f"{INDEX}/{canonicalize_name(name)}/",
                                     headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["files"]


def installable_wheels(name: str, version: str) -> tuple[list[str], list[str]]:
    """(wheels of name==version the image can install, every file of that version)."""
    wanted = Version(version)
    fitting: list[str] = []
    of_version: list[str] = []
    for entry in _files(name):
        filename = entry["filename"]
        if not filename.endswith(".whl"):
            if filename.endswith((".tar.gz", ".zip")) and f"-{version}." in filename:
                of_version.append(filename)
            continue
        _, wheel_version, _, tags = parse_wheel_filename(filename)
        if wheel_version != wanted:
            continue
        of_version.append(filename)
        if entry.get("yanked"):
            continue
        if tags & IMAGE_TAGS:
            fitting.append(filename)
    return fitting, of_version


@pytest.fixture(scope="module")
def index_reachable() -> None:
    try:
        _files("pip")
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = f"package index {INDEX} unreachable: {error}"
        print(reason)
        pytest.skip(reason)


def test_every_gpu_pin_has_a_wheel_for_the_image(index_reachable: None) -> None:
    pins = lock_pins(GPU_LOCK)
    assert "torch" in pins
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(pins, pool.map(lambda item: installable_wheels(*item), pins.items()),
                           strict=True))
    problems = []
    for name, (fitting, of_version) in results.items():
        if name in SOURCE_ONLY:
            sdist = [f for f in of_version if not f.endswith(".whl")]
            if fitting:
                problems.append(f"{name}=={pins[name]} now has a wheel ({fitting[0]}): "
                                "remove it from SOURCE_ONLY")
            elif not sdist:
                problems.append(f"{name}=={pins[name]}: neither a wheel nor an sdist")
            continue
        if not fitting:
            seen = ", ".join(of_version[:4]) or "no file of this version on the index"
            problems.append(f"{name}=={pins[name]}: no wheel for CPython 3.11 manylinux "
                            f"x86_64 (found: {seen})")
    assert not problems, "\n".join(problems)

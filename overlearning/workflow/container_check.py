"""Does a container image (or an environment) hold exactly what a lock file pins?

Used by scripts/verify_container.py after every image build or pull: the image's digest
(the SIF file's sha256, compared with the one recorded at build time), its base image
(the label the .def file sets, compared with the .def's ``From:``) and its installed
Python distributions (compared with envs/gpu.lock.txt: missing, unexpected, other version).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overlearning.core.errors import WorkflowInputError
from overlearning.workflow.provenance import file_sha256

# Prints one `name==version` per installed distribution, like `pip freeze --all`, without
# needing pip inside the image.
FREEZE_SNIPPET = (
    "import importlib.metadata as m\n"
    "seen = {}\n"
    "for d in m.distributions():\n"
    "    name = d.metadata['Name']\n"
    "    if name and name not in seen:\n"
    "        seen[name] = d.version\n"
    "print('\\n'.join(f'{n}=={v}' for n, v in sorted(seen.items(), key=lambda x: x[0].lower())))\n"
)
# Installed but never locked: the installer itself and this workflow's own package
# (installed editable in the local environment; bound from the checkout in the image).
DEFAULT_IGNORED = frozenset({"pip", "overlearning"})
LABELS_FILE = "/.singularity.d/labels.json"
BASE_IMAGE_LABEL = "org.overlearning.base-image"


def normalise(name: str) -> str:
    """PEP 503 name: ``PyYAML`` == ``pyyaml``, ``typing_extensions`` == ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pins(lines: Iterable[str], source: str) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped) -> {normalised name: version}."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if match is None:
            raise WorkflowInputError(source, f"line {number}: expected name==version, got {raw!r}")
        name = normalise(match.group(1))
        if name in pins and pins[name] != match.group(2):
            raise WorkflowInputError(source, f"line {number}: {name} pinned twice")
        pins[name] = match.group(2)
    return pins


def read_lock(path: Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise WorkflowInputError(path, "lock file not found")
    return parse_pins(path.read_text().splitlines(), str(path))


@dataclass
class LockDiff:
    """How an installed set of distributions differs from a lock file."""

    missing: dict[str, str] = field(default_factory=dict)      # locked, not installed
    extra: dict[str, str] = field(default_factory=dict)        # installed, not locked
    mismatched: dict[str, tuple[str, str]] = field(default_factory=dict)  # (locked, installed)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def as_dict(self) -> dict[str, Any]:
        return {
            "missing": dict(sorted(self.missing.items())),
            "extra": dict(sorted(self.extra.items())),
            "mismatched": {k: {"lock": v[0], "installed": v[1]}
                           for k, v in sorted(self.mismatched.items())},
        }


def compare(lock: Mapping[str, str], installed: Mapping[str, str],
            ignored: Iterable[str] = DEFAULT_IGNORED) -> LockDiff:
    """Compare {name: version} maps (names normalised here)."""
    skip = {normalise(n) for n in ignored}
    want = {normalise(k): v for k, v in lock.items()}
    have = {normalise(k): v for k, v in installed.items() if normalise(k) not in skip}
    diff = LockDiff()
    for name, version in want.items():
        if name not in have:
            diff.missing[name] = version
        elif have[name] != version:
            diff.mismatched[name] = (version, have[name])
    for name, version in have.items():
        if name not in want:
            diff.extra[name] = version
    return diff


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except OSError as exc:
        raise WorkflowInputError(command[0], f"cannot run: {exc}") from None
    if done.returncode != 0:
        raise WorkflowInputError(" ".join(command[:4]),
                                 f"failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def exec_prefix(image: str | None = None, python: str | None = None,
                apptainer: str = "apptainer") -> list[str]:
    """How to run a command in the image (``apptainer exec``) or with a local interpreter."""
    if (image is None) == (python is None):
        raise ValueError("give exactly one of image or python")
    if image is not None:
        # --cleanenv: the host's PYTHONPATH or virtualenv must not leak into the check.
        return [apptainer, "exec", "--cleanenv", image]
    return []


def installed_packages(image: str | None = None, python: str | None = None,
                       apptainer: str = "apptainer") -> dict[str, str]:
    """The distributions the image's (or the given interpreter's) Python sees."""
    interpreter = "python" if image is not None else str(python)
    out = _run([*exec_prefix(image, python, apptainer), interpreter, "-c", FREEZE_SNIPPET])
    return parse_pins(out.splitlines(), f"freeze of {image or python}")


def image_labels(image: str, apptainer: str = "apptainer") -> dict[str, str]:
    out = _run([*exec_prefix(image, apptainer=apptainer), "cat", LABELS_FILE])
    try:
        labels = json.loads(out)
    except ValueError:
        raise WorkflowInputError(image, f"{LABELS_FILE} is not JSON") from None
    return {str(k): str(v) for k, v in labels.items()}


def def_base_image(definition: Path) -> str:
    """The ``From:`` of an Apptainer definition file."""
    for line in Path(definition).read_text().splitlines():
        match = re.match(r"\s*From:\s*(\S+)", line)
        if match:
            return match.group(1)
    raise WorkflowInputError(definition, "no From: line")


def file_digest(path: Path) -> str:
    # Uncached: verification must see an image that changed since the last look.
    return file_sha256.__wrapped__(str(path))


def recorded_digest(image: Path) -> str | None:
    """The digest containers/build.sh wrote to ``<image>.sha256``, if any."""
    sidecar = Path(str(image) + ".sha256")
    if not sidecar.is_file():
        return None
    token = sidecar.read_text().split()[0]
    return token if token.startswith("sha256:") else "sha256:" + token


def verify(lock_path: Path, image: str | None = None, python: str | None = None,
           definition: Path | None = None, apptainer: str = "apptainer",
           ignored: Iterable[str] = DEFAULT_IGNORED) -> dict[str, Any]:
    """Everything scripts/verify_container.py reports; ``result["ok"]`` is the verdict."""
    lock = read_lock(lock_path)
    installed = installed_packages(image, python, apptainer)
    diff = compare(lock, installed, ignored)
    result: dict[str, Any] = {
        "lock": str(lock_path),
        "lock_sha256": file_digest(Path(lock_path)),
        "packages": diff.as_dict(),
        "packages_checked": len(lock),
    }
    ok = diff.ok
    if image is not None:
        result["image"] = image
        if Path(image).is_file():
            digest = file_digest(Path(image))
            recorded = recorded_digest(Path(image))
            result["digest"] = digest
            result["recorded_digest"] = recorded
            if recorded is not None and recorded != digest:
                ok = False
        else:
            result["digest"] = "unknown (not a local file; pull it to a .sif to pin it)"
        if definition is not None:
            expected = def_base_image(definition)
            label = image_labels(image, apptainer).get(BASE_IMAGE_LABEL)
            result["base_image"] = {"definition": expected, "label": label,
                                    "matches": label == expected}
            ok = ok and label == expected
    else:
        result["python"] = python
    result["ok"] = ok
    return result


def format_report(result: Mapping[str, Any]) -> str:
    """Human-readable lines for the terminal."""
    subject = result.get("image") or result.get("python")
    lines = [f"checked: {subject}", f"lock:    {result['lock']} ({result['packages_checked']} pins)"]
    if "digest" in result:
        lines.append(f"digest:  {result['digest']}")
        recorded = result.get("recorded_digest")
        if recorded is not None:
            same = "matches" if recorded == result["digest"] else "DIFFERS from"
            lines.append(f"         {same} the recorded {recorded}")
    if "base_image" in result:
        base = result["base_image"]
        lines.append(f"base:    {base['label']}" + ("" if base["matches"] else
                                                    f"  DIFFERS from the .def's {base['definition']}"))
    packages = result["packages"]
    for name, version in packages["missing"].items():
        lines.append(f"  missing     {name}=={version}")
    for name, version in packages["extra"].items():
        lines.append(f"  not locked  {name}=={version}")
    for name, versions in packages["mismatched"].items():
        lines.append(f"  version     {name}: lock {versions['lock']}, installed {versions['installed']}")
    lines.append("OK: the environment matches the lock" if result["ok"]
                 else "DIFFERENT: see the lines above")
    return "\n".join(lines)

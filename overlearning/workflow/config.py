"""Validation of config.yaml against schemas/config.schema.yaml with messages that name the key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from overlearning.core.errors import ConfigError, WorkflowInputError
from overlearning.core.paths import check_relative

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


def _dotted(path: Any) -> str:
    parts: list[str] = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        names = ", ".join(f"{key}.{name}" if key != "<top level>" else name for name in extra)
        return f"unknown config key {names} (misspelt? allowed here: " \
               f"{', '.join(sorted(error.schema.get('properties', {}))) or 'see schema'})"
    if error.validator == "propertyNames":
        return f"config key {key}: name {error.instance!r} not allowed ({error.message})"
    if error.validator == "required":
        return f"config key {key}: {error.message}"
    return f"config key {key}: {error.message}"


def validate_config(config: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ConfigError listing every schema violation, each naming its dotted key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(dict(config)), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = "\n".join(f"  - {_describe(e)}" for e in errors)
        raise ConfigError(f"invalid configuration ({len(errors)} problem(s)):\n{lines}")
    problems = _model_references(config)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


def _model_references(config: Mapping[str, Any]) -> list[str]:
    """Settings that need a model which ``models`` does not define (the schema cannot see it)."""
    models = config.get("models") or {}
    problems = [f"config key evaluation.pretrained: {key!r} needs models.{key}"
                for key in (config.get("evaluation") or {}).get("pretrained") or []
                if key not in models]
    if (config.get("clothes") or {}).get("method") == "segformer" and "segformer_clothes" not in models:
        problems.append("config key clothes.method: segformer needs models.segformer_clothes "
                        "(or set clothes.method: grounding_sam)")
    return problems


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable hash of the resolved configuration (provenance)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class MissingDownload:
    """A dataset input the config names that is not on disk (yet)."""

    key: str  # the config key, e.g. datasets.cuhk03.archives[0].path
    path: str
    directory: bool  # an extracted dataset folder (datasets.<name>.directory), not an archive

    def __str__(self) -> str:
        return f"{self.key}: {'directory' if self.directory else 'file'} not found: {self.path}"


def check_dataset_sources(config: Mapping[str, Any],
                          produced: set[str] | None = None) -> list[MissingDownload]:
    """The configured downloads (archives, or extracted directories) that do not exist.

    A wrong entry (an inner path leaving the dataset's root, neither archives nor directory)
    stops with ConfigError naming its key; a download not made yet is only returned, so that
    the plan can be looked at before fetching. ``produced`` holds paths that a rule of the
    workflow creates (the demo downloads), which need not exist yet.
    """
    produced = produced or set()
    problems: list[str] = []
    missing: list[MissingDownload] = []
    for name, source in config["datasets"].items():
        key = f"datasets.{name}"
        for inner in ("images", "annotations", "masks"):
            # Relative to the dataset's root: a path leaving it would read anything.
            if source.get(inner) is not None:
                try:
                    check_relative(source[inner], "config", f"{key}.{inner}")
                except WorkflowInputError as exc:
                    problems.append(exc.problem)
        directory = source.get("directory")
        if directory:
            if not Path(directory).is_dir():
                missing.append(MissingDownload(f"{key}.directory", directory, True))
            continue
        archives = source.get("archives") or []
        if not archives:
            problems.append(f"{key}: give either archives or directory")
        for i, archive in enumerate(archives):
            path = archive["path"]
            if path not in produced and not Path(path).is_file():
                missing.append(MissingDownload(f"{key}.archives[{i}].path", path, False))
    if problems:
        raise ConfigError("invalid dataset entry:\n" + "\n".join(f"  - {p}" for p in problems))
    return missing


def missing_downloads_message(missing: Sequence[MissingDownload]) -> str:
    """The missing downloads, one per line under a line that says where to get them."""
    return (f"{len(missing)} dataset download(s) missing (fetch them as docs/hpc.md, step 3 "
            "says, or point the config at them):\n" + "\n".join(f"  - {m}" for m in missing))

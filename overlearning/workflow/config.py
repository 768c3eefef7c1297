"""Validation of config.yaml against schemas/config.schema.yaml with messages that name the key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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


def check_dataset_sources(config: Mapping[str, Any], produced: set[str] | None = None) -> None:
    """Stop with the config key of any dataset whose archive or directory does not exist.

    ``produced`` holds paths that a rule of the workflow creates (the demo downloads), which
    need not exist yet.
    """
    produced = produced or set()
    problems: list[str] = []
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
                problems.append(f"{key}.directory: directory not found: {directory}")
            continue
        archives = source.get("archives") or []
        if not archives:
            problems.append(f"{key}: give either archives or directory")
        for i, archive in enumerate(archives):
            path = archive["path"]
            if path not in produced and not Path(path).is_file():
                problems.append(f"{key}.archives[{i}].path: file not found: {path}")
    if problems:
        raise ConfigError("missing dataset input:\n" + "\n".join(f"  - {p}" for p in problems))

"""One validation layer for the data files the workflow reads.

Every check ends, on failure, in one ``WorkflowInputError`` line of the form
``<file>: <JSON path or entry>: expected <what>, found <what>``. Structure (types, required
keys, ranges) is described with JSON Schema and checked with ``jsonschema``; what a schema
cannot say (id uniqueness, a box inside its image, a mask of its image's size) has small
helpers here. Numbers are finite by construction: :func:`overlearning.core.atomic.read_json`
refuses NaN and Infinity, and the ``number`` type here refuses them in data built in memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from overlearning.core.errors import WorkflowInputError
from overlearning.core.nesting import deep_path

# A box may reach this far past the image border (a share of the image's side, at least
# BOX_TOLERANCE_PIXELS): annotation tools and detectors round and pad a little, a box
# lying far outside its image is a broken file.
BOX_TOLERANCE = 0.05
BOX_TOLERANCE_PIXELS = 2.0
# GroundingDINO predicts a box's centre and size independently, each a sigmoid in [0, 1] of
# the image side, so its boxes overhang a border by up to half the side (seen on the demo's
# detector: 7.5%). More than that cannot come from the detector: a broken or foreign file.
DETECTOR_BOX_TOLERANCE = 0.5


def is_number(value: Any) -> bool:
    """A finite int or float (bool is not a number here)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number_type(checker: Any, instance: Any) -> bool:
    return is_number(instance)


def _integer_type(checker: Any, instance: Any) -> bool:
    # Ids are used as dictionary keys and in file names: 1.0 is not an id.
    return is_integer(instance)


_TYPES = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"number": _number_type, "integer": _integer_type})
StrictValidator = validators.extend(Draft202012Validator, type_checker=_TYPES)


def json_path(parts: Iterable[Any]) -> str:
    """``$.videos[3].file_names[0]`` from a jsonschema error path."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def shown(value: Any, limit: int = 60) -> str:
    """A short repr of a found value for an error line."""
    if isinstance(value, dict):
        text = "an object with keys " + ", ".join(map(str, list(value)[:6]))
    elif isinstance(value, list) and len(repr(value)) > limit:
        text = f"a list of {len(value)} items"
    else:
        text = repr(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _expected(error: ValidationError) -> str:
    kind, value = error.validator, error.validator_value
    if kind == "type":
        kinds = [value] if isinstance(value, str) else list(value)
        names = {"number": "a finite number", "integer": "an integer", "string": "a string",
                 "array": "a list", "object": "an object", "null": "null",
                 "boolean": "true or false"}
        return " or ".join(names.get(k, k) for k in kinds)
    if kind == "required":
        return "keys " + ", ".join(map(str, value))
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=",
                "exclusiveMaximum": "<"}[kind]
        return f"a value {sign} {value}"
    if kind == "minItems":
        return f"at least {value} item(s)"
    if kind == "maxItems":
        return f"at most {value} item(s)"
    if kind == "minLength":
        return "a non-empty string"
    if kind == "enum":
        return "one of " + ", ".join(map(repr, value))
    if kind in ("oneOf", "anyOf"):
        return " or ".join(s.get("description", s.get("type", "?")) if isinstance(s, dict)
                           else str(s) for s in value)
    return error.message


_FAST_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "integer": is_integer, "number": is_number,
    "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
}
_FAST_KEYWORDS = frozenset({"type", "required", "properties", "items", "minimum", "maximum",
                            "minLength", "description", "title"})
_compiled: dict[int, tuple[Mapping[str, Any], Callable[[Any], bool]]] = {}


def _never(data: Any) -> bool:
    return False


def _compile(schema: Any) -> Callable[[Any], bool]:
    """A checker answering True only when the data satisfies ``schema`` (see below)."""
    if not isinstance(schema, Mapping) or not schema.keys() <= _FAST_KEYWORDS:
        return _never
    checks: list[Callable[[Any], bool]] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if any(k not in _FAST_TYPES for k in kinds):
            return _never
        tests = [_FAST_TYPES[k] for k in kinds]
        checks.append(tests[0] if len(tests) == 1 else lambda v: any(t(v) for t in tests))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        checks.append(lambda v: not is_number(v) or (
            (low is None or v >= low) and (high is None or v <= high)))
    if "minLength" in schema:
        shortest = schema["minLength"]
        checks.append(lambda v: not isinstance(v, str) or len(v) >= shortest)
    required = tuple(schema.get("required", ()))
    properties = [(key, _compile(sub)) for key, sub in schema.get("properties", {}).items()]
    if required or properties:
        missing = object()

        def object_ok(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key in required:
                if key not in v:
                    return False
            for key, check in properties:
                value = v.get(key, missing)
                if value is not missing and not check(value):
                    return False
            return True

        checks.append(object_ok)
    if "items" in schema:
        item_check = _compile(schema["items"]) if isinstance(schema["items"], Mapping) else _never
        checks.append(lambda v: not isinstance(v, list) or all(map(item_check, v)))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _surely_valid(data: Any, schema: Mapping[str, Any]) -> bool:
    """True only when ``data`` satisfies ``schema`` (same types as StrictValidator).

    A plain check of the few keywords the data schemas use, compiled once per schema into
    nested functions: some fifty times faster than jsonschema on a file of a hundred
    thousand annotations. Any other keyword or any doubt answers False, and
    :func:`check_schema` then asks jsonschema, which finds and words the error: the checks
    and their messages are jsonschema's either way.
    """
    cached = _compiled.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, _compile(schema))
        _compiled[id(schema)] = cached
    return cached[1](data)


def check_schema(data: Any, schema: Mapping[str, Any], source: object) -> None:
    """Stop at the most relevant schema violation, as one line naming file and JSON path."""
    try:
        if _surely_valid(data, schema):
            return
        error = best_match(StrictValidator(schema).iter_errors(data))
    except RecursionError:
        # Both checks recurse per level: data nested hundreds deep (still parseable).
        raise WorkflowInputError(source, f"{deep_path(data) or '$'}: expected JSON nested a "
                                         "few levels deep, found nesting too deep to check") \
            from None
    if error is None:
        return
    found = shown(error.instance)
    if error.validator == "required":
        missing = [k for k in error.validator_value
                   if isinstance(error.instance, dict) and k not in error.instance]
        found = "no " + ", ".join(map(str, missing))
    raise WorkflowInputError(source, f"{json_path(error.absolute_path)}: expected "
                                     f"{_expected(error)}, found {found}")


def fail(source: object, entry: str, expected: str, found: Any) -> WorkflowInputError:
    """The project's one-line error: ``<file>: <entry>: expected ..., found ...``."""
    return WorkflowInputError(source, f"{entry}: expected {expected}, found {shown(found)}")


def unique_ids(entries: Iterable[Mapping[str, Any]], key: str, source: object,
               entry: str) -> None:
    """Every ``entry[key]`` occurs once; the first repeated one is named."""
    seen: set[Any] = set()
    for i, item in enumerate(entries):
        value = item.get(key)
        if value is None:
            continue
        if value in seen:
            raise WorkflowInputError(source, f"{entry}[{i}].{key}: expected a unique id, "
                                             f"found {value!r} a second time")
        seen.add(value)


def box_tolerance(side: float, share: float = BOX_TOLERANCE) -> float:
    return max(share * side, BOX_TOLERANCE_PIXELS)


def check_box_inside(x0: float, y0: float, x1: float, y1: float, width: float, height: float,
                     source: object, entry: str, share: float = BOX_TOLERANCE) -> None:
    """Corners (x0, y0)-(x1, y1) within the ``width`` x ``height`` image, each side allowed
    to overhang by ``share`` of the image's side (at least BOX_TOLERANCE_PIXELS)."""
    tx, ty = box_tolerance(width, share), box_tolerance(height, share)
    if x0 < -tx or y0 < -ty or x1 > width + tx or y1 > height + ty:
        raise WorkflowInputError(
            source, f"{entry}: expected a box inside the {width}x{height} image (tolerance "
                    f"{share:.0%} of a side, at least {BOX_TOLERANCE_PIXELS:g} px), "
                    f"found corners ({x0:g}, {y0:g})-({x1:g}, {y1:g})")


def check_xywh(bbox: Any, width: float, height: float, source: object, entry: str) -> None:
    """A COCO ``[x, y, w, h]`` of finite numbers, non-negative size, inside the image."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        raise fail(source, entry, "[x, y, w, h] of 4 finite numbers", bbox)
    x, y, w, h = bbox
    if w < 0 or h < 0:
        raise fail(source, entry, "a box of non-negative width and height", bbox)
    check_box_inside(x, y, x + w, y + h, width, height, source, entry)

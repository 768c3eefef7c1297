"""Where a JSON document nests too deeply to read or check.

Python's json parser and jsonschema's validator recurse once (or more) per level of
nesting, so a file nested a few thousand levels deep ends either in a RecursionError.
Both readers catch it and name the spot with these helpers, which walk iteratively: the
byte position (line, column) in the text when parsing failed, the JSON path when
validation failed. Real annotation files nest fewer than ten levels.
"""

from __future__ import annotations

from typing import Any

# Deeper than any dataset file the workflow reads; where the search for the culprit stops.
MAX_DEPTH = 100


def deep_position(text: bytes, limit: int = MAX_DEPTH) -> tuple[int, int, int] | None:
    """(byte offset, line, column) where the text first opens more than ``limit`` nested
    arrays or objects (outside strings), or None."""
    depth = 0
    in_string = escaped = False
    line, line_start = 1, 0
    for offset, byte in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:      # backslash
                escaped = True
            elif byte == 0x22:      # quote
                in_string = False
            continue
        if byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return offset, line, offset - line_start + 1
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
        elif byte == 0x0A:
            line, line_start = line + 1, offset + 1
    return None


def deep_path(data: Any, limit: int = MAX_DEPTH) -> str | None:
    """``$.a[0]...`` of the first value more than ``limit`` levels deep, or None."""
    stack: list[tuple[Any, str, int]] = [(data, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= limit:
                return path
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in items:
                if isinstance(child, dict | list):
                    where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
                    stack.append((child, where, depth + 1))
    return None

"""The library's layout: subpackages by stage, imports pointing one way, no cycle.

Read from the source (ast), so a function-level import counts like any other: hiding an
import inside a function to dodge a cycle is exactly what this test must catch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "overlearning"
# The study's order: a package may import from itself and from packages before it only.
STAGES = ["core", "data", "models", "train", "detect", "safeguards", "evaluate", "workflow"]
# Outside the stages' graph: may import any stage, imported by none.
OUTSIDE = {"demo"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported overlearning module, imported inside a function?) for one source file."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names if a.name.startswith("overlearning"))
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.startswith("overlearning"):
                    for alias in child.names:
                        candidate = f"{child.module}.{alias.name}"
                        target = candidate if _exists(candidate) else child.module
                        found.append((target, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel).is_dir()


def graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_every_module_sits_in_a_stage_package():
    loose = [m for m in graph() if m != "overlearning" and package_of(m) is None
             and m.split(".")[1] not in STAGES + sorted(OUTSIDE)]
    assert not loose, f"modules outside the stage packages: {loose}"


def test_no_import_cycle():
    edges = {m: {t for t, _ in targets} for m, targets in graph().items()}
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges))}"


def test_imports_point_from_later_stages_to_earlier_ones():
    wrong = []
    for module, targets in graph().items():
        source = package_of(module)
        if source is None or source in OUTSIDE:
            continue
        for target, _ in targets:
            dest = package_of(target)
            if dest is None:
                continue
            if dest in OUTSIDE or STAGES.index(dest) > STAGES.index(source):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the stage order:\n" + "\n".join(wrong)


def test_no_function_level_import_of_the_library():
    hidden = [f"{m} -> {t}" for m, targets in graph().items() for t, nested in targets if nested]
    assert not hidden, "function-level imports of overlearning modules:\n" + "\n".join(hidden)


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
])
def test_cycle_finder_itself(edges, expected):
    assert (find_cycle(edges) is not None) is expected


def test_stage_order_check_catches_a_backward_import(tmp_path, monkeypatch):
    """The checker flags core importing a later stage (a hand-made tree, not the real one)."""
    fake = tmp_path / "overlearning"
    (fake / "core").mkdir(parents=True)
    (fake / "evaluate").mkdir()
    for folder in (fake, fake / "core", fake / "evaluate"):
        (folder / "__init__.py").write_text("")
    (fake / "evaluate" / "metrics.py").write_text("X = 1\n")
    (fake / "core" / "helpers.py").write_text(
        "def f():\n    from overlearning.evaluate.metrics import X\n    return X\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    g = graph()
    assert g["overlearning.core.helpers"] == [("overlearning.evaluate.metrics", True)]
    with pytest.raises(AssertionError, match="core.helpers -> overlearning.evaluate.metrics"):
        test_imports_point_from_later_stages_to_earlier_ones()

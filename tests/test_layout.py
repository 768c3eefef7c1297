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


# ---------------------------------------------------------------- local rules never search
#
# Rules in the Snakefile's `localrules` run on the login node beside Snakemake: they must read
# what the cluster jobs stored, never search, rank or score again (issue 20 part 5).
REPO = PACKAGE.parent
SEARCHING = {f"overlearning.evaluate.{name}" for name in (
    "ranking", "metrics", "reid_protocol", "rerank", "query_expansion", "attackers",
    "metrics_file", "anonymised", "evidence_rows", "embedding_map", "item_lists")}


def local_rules() -> list[str]:
    text = (REPO / "Snakefile").read_text()
    block = text.split("\nlocalrules:\n", 1)[1]
    names = []
    for line in block.splitlines():
        if not line.startswith("    "):
            break
        names.append(line.strip().rstrip(","))
    return names


def rule_scripts() -> dict[str, list[str]]:
    """Rule name -> the scripts its shell command runs (``script("name.py")``)."""
    import re

    scripts: dict[str, list[str]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for match in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.S | re.M):
            scripts[match[1]] = re.findall(r'script\("([\w.]+)"\)', match[2])
    return scripts


def _module_path(module: str) -> Path | None:
    rel = REPO / Path(*module.split("."))
    for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_closure(source: Path) -> set[str]:
    """Every overlearning module a file imports, directly or through the modules it imports."""
    seen: set[str] = set()
    todo = [module for module, _ in imports_of(source)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_path(module)
        if path is not None:
            todo.extend(m for m, _ in imports_of(path))
    return seen


def test_local_rules_only_read_stored_results():
    scripts = rule_scripts()
    local = local_rules()
    assert {"query_grid", "leaks", "tables"} <= set(local)
    for rule in local:
        assert rule in scripts, f"local rule {rule} not found in rules/*.smk"
        for name in scripts[rule]:
            reached = imported_closure(REPO / "scripts" / name) & SEARCHING
            assert not reached, f"local rule {rule} ({name}) imports {sorted(reached)}"


def test_the_local_rule_check_sees_a_search():
    # The check itself: the metrics script (a cluster job) reaches the ranking.
    assert "overlearning.evaluate.ranking" in imported_closure(REPO / "scripts" / "compute_metrics.py")
    assert "overlearning.evaluate.ranking" in imported_closure(
        REPO / "overlearning" / "evaluate" / "embedding_map.py")

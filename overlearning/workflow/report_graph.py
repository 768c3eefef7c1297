"""The rule graph on the HTML report's first page, one node per rule.

Snakemake (9.x) draws that graph from its job DAG keeping "one job of each rule per
topological level": a rule whose jobs sit at different depths appears once per depth.
In this workflow detection, segmentation and anonymisation run on person sets (right after
preparation) and on the VIS test split (after crops, one level later), and query grids
with index exclusion wait for the exclusion lists, so six rules showed twice. It also only
draws the dependencies of the one job it keeps per node, so edges could go missing.

``rule_graph_spec`` builds the same structure from the rule-level graph instead: one node
per rule, an edge wherever any job of one rule feeds any job of another, nodes ordered by
their longest path from a source rule (so every edge points down). ``install`` hands it to
Snakemake's HTML reporter; the Snakefile calls it, so a plain ``snakemake --report`` uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def rule_edges(dependencies: Mapping[Any, Iterable[Any]], rule_of: Any) -> set[tuple[str, str]]:
    """(upstream rule, downstream rule) for every job dependency, self-loops dropped."""
    edges = set()
    for job, upstream in dependencies.items():
        for dep in upstream:
            source, target = rule_of(dep), rule_of(job)
            if source != target:
                edges.add((source, target))
    return edges


def layered_order(rules: Iterable[str], edges: set[tuple[str, str]]) -> list[str]:
    """Rules by longest path from a source (then by name); a cycle keeps the rest by name."""
    rules = sorted(set(rules) | {r for edge in edges for r in edge})
    parents: dict[str, set[str]] = {r: set() for r in rules}
    for source, target in edges:
        parents[target].add(source)
    level: dict[str, int] = {}
    remaining = set(rules)
    while remaining:
        ready = sorted(r for r in remaining if parents[r] <= level.keys())
        if not ready:  # a cycle between rules (not expected); place the rest after
            base = max(level.values(), default=-1) + 1
            level.update({r: base for r in remaining})
            break
        for rule in ready:
            level[rule] = max((level[p] + 1 for p in parents[rule]), default=0)
        remaining -= set(ready)
    return sorted(rules, key=lambda r: (level[r], r))


def graph_spec(order: list[str], edges: set[tuple[str, str]]) -> dict[str, list[dict]]:
    """Snakemake's rule-graph data: nodes (vertical list) and links, split into links to the
    next node ("direct", drawn straight) and longer ones (drawn as arcs)."""
    index = {rule: i for i, rule in enumerate(order)}
    nodes = [{"rule": rule, "fx": 10, "fy": i * 50} for i, rule in enumerate(order)]
    links, direct = [], []
    for source, target in sorted(edges, key=lambda e: (index[e[1]], index[e[0]])):
        link = {"target": index[target], "source": index[source], "sourcerule": source,
                "targetrule": target, "value": 1}
        (direct if index[target] - index[source] == 1 else links).append(link)
    return {"nodes": nodes, "links": links, "links_direct": direct}


def rule_graph_spec(dag: Any) -> tuple[dict[str, list[dict]], int, int]:
    """Drop-in for ``snakemake.report.rulegraph_spec.rulegraph_spec``: (spec, xmax, ymax)."""
    jobs = list(dag.jobs)
    edges = rule_edges({job: list(dag.dependencies[job]) for job in jobs},
                       lambda job: job.rule.name)
    order = layered_order((job.rule.name for job in jobs), edges)
    spec = graph_spec(order, edges)
    return spec, 100, max((node["fy"] for node in spec["nodes"]), default=0)


def install() -> bool:
    """Make Snakemake's HTML reporter draw ``rule_graph_spec``; False where that reporter
    is not the expected one (then Snakemake's own graph is left as it is)."""
    try:
        import snakemake.report.html_reporter as reporter
    except ImportError:
        return False
    if not callable(getattr(reporter, "rulegraph_spec", None)):
        return False
    reporter.rulegraph_spec = rule_graph_spec
    return True

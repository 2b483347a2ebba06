"""The package's import graph: no cycles, and no module imports one from a higher layer.

Read statically from every module's top-level imports (those under ``TYPE_CHECKING`` are for
types only and never run), so the test does not depend on which module a process happens to
import first.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bplambda"

LAYERS = [
    [
        "errors",
        "device",
        "core_slots",
        "workers",
        "cluster_jobs",
        "compare_results",
        "labels",
        "paths",
        "checks",
        "provenance",
        "wording",
    ],
    ["cells", "outputs", "readout", "synthesiser", "regularisation"],
    ["bp_lambda", "metrics", "rules", "stacking"],
    ["tasks"],
    ["train", "resume", "evaluate", "curvature", "sharpness"],
    [
        "parameters",
        "profiles",
        "analysis",
        "verdicts",
        "results",
        "plots",
        "figure_checks",
        "findings",
        "convergence",
    ],
    ["experiments"],
    [
        "what_reproduces",
        "reproduce",
        "sweep",
        "campaign",
        "campaign_queue",
        "bench",
        "bench_workers",
    ],
]
"""Lowest first; a module may import from its own layer (acyclically) and the ones below. The
package's ``__init__`` (the public API) sits above them all."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports when it runs."""

    def owner(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(owner(a.name) for a in node.names if a.name.startswith("bplambda"))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bplambda"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else owner(node.module))
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return found


def _layer(module: str) -> int:
    if module == "bplambda":
        return len(LAYERS)
    part = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if part in names)


def test_every_module_has_a_layer_and_imports_none_above_it():
    modules = _modules()
    unplaced = sorted({m.split(".")[1] for m in modules if m != "bplambda"} - {
        name for names in LAYERS for name in names})  # fmt: skip
    assert not unplaced, f"give {unplaced} a place in LAYERS"
    upward = [f"{m} -> {d}" for m, path in modules.items() for d in _imports(path, modules)
              if _layer(d) > _layer(m)]  # fmt: skip
    assert not upward


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: _imports(path, modules) - {m} for m, path in modules.items()}
    state: dict[str, str] = {}
    cycles = []

    def walk(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                cycles.append(" -> ".join([*stack[stack.index(other) :], module, other]))
            elif other not in state:
                walk(other, [*stack, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [])
    assert not cycles

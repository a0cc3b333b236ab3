"""The package layering of src/groundwork holds: every import, read from the source with
`ast` (nothing is imported), goes from a unit to a unit in a lower layer, and the units
form no cycle. A unit is a top-level package (`groundwork.store`) or a top-level module
(`groundwork.runs`). Imports inside functions and under TYPE_CHECKING count: they are
dependencies too."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "groundwork"

# Bottom to top. A unit may import units of lower layers only (never one of its own layer
# but itself). `groundwork` is the package's own `__init__` (the version).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("groundwork", "records", "files", "redaction", "log_lines", "run_lock", "parallel", "idea_categories"),
    ("curves", "store", "environments", "baseline", "descriptors"),
    ("comparison", "config", "noise_floor"),
    ("protocols", "prompting"),
    ("patch", "llm", "idea_building"),
    ("execution", "ideation", "implementation", "search", "runs"),
    ("analysis",),
    ("wiring",),
    ("attempts",),
    ("repair_rounds",),
    ("loop", "reconnect", "console", "cli_errors", "dashboard", "export", "env_setup"),
    ("cli_config",),
    ("rl",),
    ("cli",),
)

# Upward edges allowed for now, module -> imported module, each with its reason (none
# today). The test fails when one of them goes away (remove it here) as well as when a new
# one appears.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The groundwork modules `name` imports, anywhere in its file."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "groundwork")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "groundwork":
                continue
            # `from groundwork.x import y` names the module groundwork.x.y when there is one.
            subs = {f"{base}.{a.name}" for a in node.names} & known
            found.update(subs or {base})
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "groundwork"


def module_edges() -> set[tuple[str, str]]:
    modules = _modules()
    known = set(modules)
    edges = set()
    for name, path in modules.items():
        for target in _imports(name, path, known):
            assert target in known, f"{name} imports {target}, which is not a module under src/groundwork"
            edges.add((name, target))
    return edges


def _layer_of() -> dict[str, int]:
    return {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _upward(edges: set[tuple[str, str]], layer: dict[str, int]) -> list[str]:
    bad = []
    for source, target in sorted(edges):
        s, t = _unit(source), _unit(target)
        if s != t and layer[t] >= layer[s] and (source, target) not in ALLOWED_UPWARD:
            bad.append(f"{source} (layer {layer[s]}: {s}) imports {target} (layer {layer[t]}: {t})")
    return bad


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as its nodes, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _unit_graph(edges: set[tuple[str, str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        if _unit(source) != _unit(target) and (source, target) not in ALLOWED_UPWARD:
            graph[_unit(source)].add(_unit(target))
    return graph


def test_every_unit_has_a_layer_once():
    units = {_unit(m) for m in _modules()}
    listed = [u for layer in LAYERS for u in layer]
    assert len(listed) == len(set(listed)), "a unit is listed in two layers"
    assert units - set(listed) == set(), "new units: place them in LAYERS"
    assert set(listed) - units == set(), "LAYERS names units that no longer exist"


def test_imports_only_go_down():
    bad = _upward(module_edges(), _layer_of())
    assert bad == [], "upward imports (move the code down, or import it from a lower layer):\n" + "\n".join(bad)


def test_no_cycles_between_packages():
    assert _cycle(_unit_graph(module_edges())) is None


def test_allowed_upward_edges_still_exist():
    edges = module_edges()
    stale = [f"{s} -> {t}" for s, t in ALLOWED_UPWARD if (s, t) not in edges]
    assert stale == [], "these allowed upward imports are gone: remove them from ALLOWED_UPWARD"


def test_a_new_back_arrow_is_caught(tmp_path, monkeypatch):
    """The check sees an upward import, top-level or inside a function, and its cycle."""
    pkg = tmp_path / "groundwork"
    for rel in ("__init__.py", "records.py", "store/__init__.py", "store/sqlite_store.py"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text("")
    (pkg / "store" / "sqlite_store.py").write_text("from groundwork.records import x\n")
    (pkg / "records.py").write_text("def f():\n    from .store import sqlite_store\n")
    monkeypatch.setattr(f"{__name__}.SRC", pkg)
    edges = module_edges()
    assert ("groundwork.records", "groundwork.store.sqlite_store") in edges
    bad = _upward(edges, {"groundwork": 0, "records": 0, "store": 1})
    assert bad == ["groundwork.records (layer 0: records) imports groundwork.store.sqlite_store (layer 1: store)"]
    assert _cycle(_unit_graph(edges)) in (["records", "store", "records"], ["store", "records", "store"])

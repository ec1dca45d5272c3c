"""The import contract: layers import downwards only, training is imported by no inference
module, and no module imports itself back through others. Every import counts, also the ones
inside functions (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "wsls"

# lowest first; a module may import its own layer and the ones below
LAYERS = (
    ("wsls", "wsls.errors", "wsls.settings", "wsls.runtime", "wsls.morphology", "wsls.metrics",
     "wsls.viz", "wsls.ops", "wsls.io"),
    ("wsls.data", "wsls.phantom", "wsls.models", "wsls.bundle", "wsls.pretrained"),
    ("wsls.method", "wsls.baselines"),
    ("wsls.training", "wsls.evaluation", "wsls.inputs", "wsls.segmentation"),
    ("wsls.api", "wsls.batch", "wsls.crossval", "wsls.demo"),
    ("wsls.cli", "wsls.__main__"),
)  # fmt: skip
# (importer, imported): never, whatever the layers say
FORBIDDEN = (
    ("wsls.evaluation", "wsls.training"),
    ("wsls.training", "wsls.evaluation"),
    ("wsls.api", "wsls.training"),
    ("wsls.batch", "wsls.training"),
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its file)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    deps.add(sub if sub in files else base)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    if rank < 0:
        raise AssertionError(f"{module} is in no layer of tests/test_layout.py")
    return rank


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(root: Path) -> list[str]:
    graph = import_graph(root)
    problems = []
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if _under(module, dep):  # a package's own __init__ (wsls, wsls.io...)
                continue
            if _layer(dep) > _layer(module):
                problems.append(f"{module} imports {dep}, a higher layer")
            for importer, imported in FORBIDDEN:
                if _under(module, importer) and _under(dep, imported):
                    problems.append(f"{module} imports {dep} ({importer} never imports {imported})")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def test_wsls_keeps_its_import_contract():
    assert violations(PACKAGE) == []


def test_the_checker_sees_a_violation_and_a_cycle(tmp_path):
    root = tmp_path / "wsls"
    for folder in ("method", "training", "io"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "method" / "segment.py").write_text(
        "def f():\n    from wsls.training.loop import fit\n"  # a lazy upward import
    )
    (root / "training" / "loop.py").write_text("from wsls.method import segment\n")
    (root / "io" / "a.py").write_text("from . import b\n")
    (root / "io" / "b.py").write_text("import wsls.io.a\n")
    found = violations(root)
    assert "wsls.method.segment imports wsls.training.loop, a higher layer" in found
    assert "import cycle: wsls.io.a -> wsls.io.b" in found
    assert "import cycle: wsls.method.segment -> wsls.training.loop" in found

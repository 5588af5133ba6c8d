"""The layering rules, read from the source: the library never imports the UI, streamlit or
plotly, nothing in it imports the command line, and there is no import cycle between its
modules — counting imports inside functions too, so a cycle cannot hide behind a lazy import."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xai_core"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            prefix = f"{base}." if node.level and node.module else base if node.level else ""
            source = prefix + (node.module or "")
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)  # ``from . import module``
    return found


def library_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = {t for t in imports_of(path) if t in modules and t != name}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: not an edge worth reporting, since
        # every submodule would then "depend" on its own package.
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_library():
    graph = library_graph()
    assert len(graph) > 20  # the walk really read the package
    # The package's own __init__ re-exports the public API; it is imported first by Python anyway.
    graph = {k: v - {"xai_core"} for k, v in graph.items() if k != "xai_core"}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_library_never_imports_the_ui_or_the_command_line():
    for path in PACKAGE.rglob("*.py"):
        imported = imports_of(path)
        assert not {i.split(".")[0] for i in imported} & {"streamlit", "plotly", "ui", "pages"}, path
        if "cli" not in path.relative_to(PACKAGE).parts and path.name != "__main__.py":
            assert not any(i == "xai_core.cli" or i.startswith("xai_core.cli.") for i in imported), path

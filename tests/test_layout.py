"""The house's rules (issue #23): imports follow the data, the graph knows nothing of the API, each setting is
declared once and documented from its declaration, and no API function outgrows a screen."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("alphapulse_contract", "alphapulse_assets", "alphapulse_serving")
API_PROPER = ("fastapi", "starlette", "uvicorn", "alphapulse_serving")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (a hidden import is still a dependency)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Our modules and the ones of ours each imports."""
    modules = _modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return cycles


def _domain(module: str) -> str:
    """A domain folder (alphapulse_assets.training) or a top-level module counts as one node."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_no_import_cycle_between_domains():
    domains: dict[str, set[str]] = {}
    for source, targets in _graph().items():
        domains.setdefault(_domain(source), set()).update(_domain(t) for t in targets if _domain(t) != _domain(source))
    assert _cycles(domains) == []


def test_the_contract_depends_on_neither_side():
    for name, path in _modules().items():
        if name.startswith("alphapulse_contract"):
            imported = {i.split(".")[0] for i in _imported(path)}
            assert not imported & {"alphapulse_assets", "alphapulse_serving", "dagster", *API_PROPER}, name


@pytest.mark.parametrize("entry", ["alphapulse_assets.definitions", "alphapulse_assets.demo"])
def test_the_graph_pulls_in_nothing_of_the_api(entry):
    probe = f"import sys, {entry}; print(sorted(m for m in sys.modules if m.split('.')[0] in {API_PROPER!r}))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    ).stdout
    assert out.strip() == "[]", out


def test_no_api_function_over_sixty_lines():
    long = []
    for name, path in _modules().items():
        if name.startswith("alphapulse_serving"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > 60:
                        long.append(f"{name}.{node.name}: {length} lines")
    assert long == []


def test_alphapulse_variables_are_read_only_through_the_schema():
    readers = []
    for name, path in _modules().items():
        if name == "alphapulse_contract.config":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            reads = ("environ.get(", "getenv(", "environ[")
            if "ALPHAPULSE_" in line and any(r in line for r in reads) and "] =" not in line:
                readers.append(f"{name}:{number}: {line.strip()}")
    assert readers == []


def test_the_readme_configuration_tables_are_current():
    from alphapulse_assets.settings import configuration_table as graph_table
    from alphapulse_serving.config import configuration_table as api_table

    readme = (REPO / "README.md").read_text()
    for table, command in [
        (graph_table(), "python -m alphapulse_assets.settings"),
        (api_table(), "python -m alphapulse_serving.config"),
    ]:
        assert table in readme, f"README's configuration table is stale: paste the output of `{command}` (make docs)"

"""The import graph keeps the layout of docs/architecture.md: no circles, nothing imports a
part above it, and no vehicle kind imports another."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("telemetry", "api", "simulators")

#: Parts from the top down; a module may import its own part and the parts below it. The
#: longest matching prefix names a module's part.
PARTS: tuple[tuple[str, ...], ...] = (
    ("telemetry.cli", "telemetry.__main__"),
    ("api",),
    ("simulators",),
    ("telemetry.ingest", "telemetry.broker"),
    ("telemetry.kinds.registry",),
    ("telemetry.kinds",),
    ("telemetry.roads", "telemetry.alerts", "telemetry.web", "telemetry.accounts"),
    ("telemetry.store",),
    ("telemetry.hj212",),
    ("telemetry",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Project modules imported anywhere in the module (inside functions too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import module` imports the module when there is one by that name.
            targets = [node.module] + [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            ]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                yield target


GRAPH = {name: sorted(set(_imports(name, path))) for name, path in MODULES.items()}


def _part(module: str) -> int:
    best, rank = -1, len(PARTS)
    for index, prefixes in enumerate(PARTS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best:
                best, rank = len(prefix), index
    return rank


def _kind(module: str) -> str | None:
    """The kind package a module belongs to (``telemetry.kinds.<kind>``), if any."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["telemetry", "kinds"]:
        candidate = ".".join(parts[:3])
        if candidate in MODULES and MODULES[candidate].name == "__init__.py":
            return parts[2]
    return None


def test_the_project_modules_are_found() -> None:
    assert "telemetry.ingest.worker" in GRAPH
    assert "telemetry.kinds.walkthrough.pipeline" in GRAPH
    assert "telemetry.kinds.registry" in GRAPH["telemetry.ingest.worker"]


def test_no_module_imports_a_part_above_its_own() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _part(target) < _part(module)
    ]
    assert upward == []


def test_no_kind_imports_another_kind() -> None:
    crossing = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _kind(module) is not None
        and _kind(target) is not None
        and _kind(module) != _kind(target)
    ]
    assert crossing == []


def test_the_kinds_contract_imports_no_kind() -> None:
    shared = [m for m in GRAPH if m.startswith("telemetry.kinds.") and _kind(m) is None]
    assert "telemetry.kinds.contract" in shared
    leaking = [
        f"{module} -> {target}"
        for module in shared
        if module != "telemetry.kinds.registry"
        for target in GRAPH[module]
        if _kind(target) is not None
    ]
    assert leaking == []


def test_the_import_graph_has_no_circle() -> None:
    # Tarjan's strongly connected components; any component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_of_the_package_is_in_a_part(package: str) -> None:
    assert all(_part(m) < len(PARTS) for m in GRAPH if m.split(".")[0] == package)

"""The import rules that keep the layers apart, read from the code itself.

shared/ is the library and imports nothing of the project above it; the sender and
the listener import only shared/ (never each other, never the application); the
application (probe_stack/) may import them all but the emulator only where it runs it;
bench/ never uses test code; and no module imports itself through a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("shared", "probe_sender", "probe_listener", "probe_stack", "probe_deploy", "emulator", "bench", "tests")

# package -> the project packages it may import
ALLOWED = {
    "shared": {"shared"},
    "probe_sender": {"shared", "probe_sender"},
    "probe_listener": {"shared", "probe_listener"},
    "probe_stack": {"shared", "probe_sender", "probe_listener", "probe_stack", "probe_deploy", "emulator"},
    "probe_deploy": {"probe_deploy"},
    "emulator": {"emulator", "shared"},
    # it times the sender's collector alone, and the status page's queries and render
    "bench": {"bench", "emulator", "shared", "probe_sender", "probe_stack"},
    "tests": set(PACKAGES) - {"bench"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, bool]]:
    """(project module imported, whether at module level) for every import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield name, id(node) in top_level


def graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module: imported at module level}."""
    known = modules()
    edges: dict[str, dict[str, bool]] = {}
    for name, path in known.items():
        targets: dict[str, bool] = {}
        for target, top in imports(path, known):
            if target != name:
                targets[target] = targets.get(target, False) or top
        edges[name] = targets
    return edges


def test_each_package_imports_only_what_its_layer_may() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[module.split(".")[0]]
    ]
    assert not wrong, wrong


def test_the_application_imports_the_emulator_only_inside_the_command_that_runs_it() -> None:
    eager = [
        f"{module} imports {target} at module level"
        for module, targets in graph().items()
        if module.startswith("probe_stack")
        for target, top in targets.items()
        if top and target.startswith("emulator")
    ]
    assert not eager, eager


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in edges.get(node, {}):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in edges:
        if node not in state:
            visit(node)
    assert not cycles, cycles


def test_the_rules_see_real_imports() -> None:
    """The checks above would pass on an empty graph; make sure they read the code."""
    edges = graph()
    assert "shared.store" in edges["probe_sender.sender"]
    assert (
        "probe_stack.runtime.run" in edges["probe_stack.commands.cli"]
        and not edges["probe_stack.commands.cli"]["probe_stack.runtime.run"]
    )
    assert len(edges) > 40

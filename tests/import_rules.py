"""Reads what every module of a tree uses, and judges it against the layers' rules.

Pure functions of a directory, so that tests/test_imports.py checks the real tree with them
and proves on small synthetic trees that each way around the rules is caught. A module
"uses" another when it imports it (statements, relative ones resolved), loads it by name
(`importlib.import_module("x.y")`, `__import__("x")`, `runpy.run_module("x")` with a string constant), or starts it
(`-m x.y` in a string constant or a `[..., "-m", "x.y"]` literal). The configuration that
starts programs (supervisord.conf, the Makefile, the Dockerfile, pyproject's scripts) must
name modules that exist. Packages are every top-level directory with an `__init__.py`, so a
new one cannot slip past a hand-kept list: it has no rules until it is given some.
"""

from __future__ import annotations

import ast
import itertools
import re
import tomllib
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

# Files that start the project's programs by module name.
CONFIG_FILES = ("supervisord.conf", "Makefile", "Dockerfile")
DASH_M = re.compile(r"(?:^|[\s\"'\[,])-m[\s\"',]+([A-Za-z_][\w.]*)")
LOADERS = ("import_module", "__import__", "run_module")  # functions that load a module named by a string
FRONT_DOORS = ("__init__", "__main__")  # a package's own modules, in no room


@dataclass(frozen=True)
class Use:
    source: str
    target: str
    top: bool  # at module level (imported with the module itself), not inside a function or a block
    how: str  # "import", "import_module", "__import__" or "-m"


def packages(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}


def modules(root: Path, names: Set[str]) -> dict[str, Path]:
    found = {}
    for package in sorted(names):
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _known(name: str, known: Mapping[str, Path]) -> str:
    """The project module `name` lands in (a.b.c -> a.b when c is a function), or ''."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute package a relative `from ... import` starts from."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported(node: ast.AST, module: str, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or "" if node.level == 0 else _absolute(module, path, node)
        return [f"{base}.{alias.name}" for alias in node.names] + [base]
    return []


def _loaded(node: ast.AST) -> tuple[list[str], str]:
    """`import_module("x")` (as importlib.import_module or imported by name), `__import__("x")`, `run_module("x")`."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return [], ""
    func, first = node.func, node.args[0].value
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return ([first], name) if name in LOADERS and isinstance(first, str) else ([], "")


def _started(node: ast.AST) -> list[str]:
    """`-m x` in a string, or `"-m", "x"` side by side in a list or tuple."""
    if isinstance(node, ast.List | ast.Tuple):
        values = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
        return [b for a, b in itertools.pairwise(values) if a == "-m" and isinstance(b, str)]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return DASH_M.findall(node.value)
    return []


def _names(node: ast.AST, module: str, path: Path) -> tuple[list[str], str]:
    """The module names one node uses, and how; ([], '') for a node that uses none."""
    if names := _imported(node, module, path):
        return names, "import"
    names, how = _loaded(node)
    return (names, how) if names else (_started(node), "-m")


def _inside_code(tree: ast.Module) -> set[int]:
    """Every node inside a function, a class or a block: run later or maybe, not on import."""
    inside: set[int] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Import | ast.ImportFrom | ast.Expr | ast.Assign | ast.AnnAssign):
            continue
        inside |= {id(n) for n in ast.walk(statement)}
    return inside


def _docstrings(tree: ast.Module) -> set[int]:
    """Docstrings may say `python -m x` to a reader; they start nothing."""
    holders = [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)),
    ]
    return {
        id(h.body[0].value)
        for h in holders
        if h.body and isinstance(h.body[0], ast.Expr) and isinstance(h.body[0].value, ast.Constant)
    }


def uses(module: str, path: Path, known: Mapping[str, Path]) -> Iterator[Use]:
    tree = ast.parse(path.read_text(), str(path))
    later, docs = _inside_code(tree), _docstrings(tree)
    for node in ast.walk(tree):
        if id(node) in docs:
            continue
        names, how = _names(node, module, path)
        for name in names:
            target = _known(name, known)
            if target and target != module:
                yield Use(module, target, id(node) not in later, how)


def graph(root: Path) -> list[Use]:
    known = modules(root, packages(root))
    return [use for name, path in known.items() for use in uses(name, path, known)]


def config_targets(root: Path) -> Iterator[tuple[str, str]]:
    """(file, module) for every module the configuration starts: `-m` targets and console scripts."""
    for name in CONFIG_FILES:
        path = root / name
        if path.is_file():
            for line in path.read_text().splitlines():
                for target in DASH_M.findall(line):
                    yield name, target
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
        for entry in scripts.values():
            yield "pyproject.toml", entry.partition(":")[0]


def _room(module: str, rooms: Mapping[str, Mapping[str, Set[str]]]) -> str | None:
    """The room of a module of a package with rooms ('' for a front door), None without rooms."""
    parts = module.split(".")
    if parts[0] not in rooms:
        return None
    return "" if len(parts) == 1 or parts[1] in FRONT_DOORS else parts[1]


def _roomless(known: Mapping[str, Path], rooms: Mapping[str, Mapping[str, Set[str]]]) -> list[str]:
    out = []
    for module in known:
        room, package = _room(module, rooms), module.split(".")[0]
        if room and room not in rooms[package]:
            out.append(f"{module} is in no room of {package}: add its room to the rules")
    return out


def _rule_broken(use: Use, allowed: Mapping[str, Set[str]], rooms: Mapping[str, Mapping[str, Set[str]]]) -> str:
    """The rule a use breaks, or ''."""
    package, target = use.source.split(".")[0], use.target.split(".")[0]
    if target != package:
        return "" if target in allowed.get(package, set()) else f"{package} may not use {target}"
    here, there = _room(use.source, rooms), _room(use.target, rooms)
    if not here or not there or there == here or there not in rooms[package]:
        return ""
    return "" if there in rooms[package].get(here, set()) else f"room {here} may not use room {there}"


def problems(root: Path, allowed: Mapping[str, Set[str]], rooms: Mapping[str, Mapping[str, Set[str]]]) -> list[str]:
    """Every breach of the rules in the tree at `root`, one line each (none: the tree keeps them).

    `allowed`: package -> the other packages it may use. `rooms`: package -> room -> the other
    rooms of that package it may use; every module of such a package lives in a room."""
    found = packages(root)
    known = modules(root, found)
    out = [f"{p}/ is a package with no import rules: add it to the rules" for p in sorted(found - allowed.keys())]
    out += _roomless(known, rooms)
    breaches: dict[tuple[str, str], str] = {}  # (module, rule) -> the first line saying so
    for use in graph(root):
        if rule := _rule_broken(use, allowed, rooms):
            breaches.setdefault((use.source, rule), f"{use.source} uses {use.target} ({use.how}): {rule}")
    out += breaches.values()
    out += [
        f"{where} starts {target}, which is no module of the tree"
        for where, target in config_targets(root)
        if target.split(".")[0] in found and target not in known
    ]
    return out


def cycles(root: Path) -> list[list[str]]:
    """Import cycles. Starting a program (`-m`) is no import: a launcher and its program may name each other."""
    edges: dict[str, set[str]] = {}
    for use in graph(root):
        if use.how != "-m":
            edges.setdefault(use.source, set()).add(use.target)
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found

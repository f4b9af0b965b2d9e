"""`make test` installs every program the suite runs: a new dependency cannot hide on a machine that had it.

The suite's Python (tests, their conftest, helpers, harnesses and the test kit) is read as syntax, and every
program it runs or looks up is collected: the first word of a literal argument list given to
subprocess or `start`, and the names given to `shutil.which` (directly, through a loop over a
constant, or through a small wrapper such as `tool(name)`). Each must be in the Makefile's
TEST_TOOLS, in the virtualenv, or part of every Debian system.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess

import pytest

from tests.helpers import ROOT

# On every Debian system (Essential: yes): bash, coreutils, dash, dpkg.
ESSENTIAL = {"bash", "sh", "true", "false", "sleep", "env", "dpkg"}
ESSENTIAL |= {"make"}  # not Essential, but what runs the suite (`make test`)
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "start"}
# What a listed tool needs at run time beyond its package's Depends (make installs with
# --no-install-recommends): podman's default network (netavark) programs iptables.
NEEDS = {"podman": {"iptables"}}
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def make_variable(name: str) -> list[str]:
    match = re.search(rf"^{name} := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"the Makefile defines no {name}"
    return match.group(1).split()


def literal_strings(node: ast.AST | None) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for element in node.elts for s in literal_strings(element)]
    return []


def is_which(call: ast.AST) -> bool:
    return isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "which"


def programs_in(tree: ast.Module) -> list[set[str]]:
    """Each program the module runs or looks up, as a set of alternatives (`which(a) or which(b)`)."""
    constants = {
        target.id: literal_strings(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    loops = {  # loop variable -> the constants it runs over
        n.target.id: constants.get(n.iter.id, [])
        for n in ast.walk(tree)
        if isinstance(n, ast.comprehension | ast.For)
        if isinstance(n.target, ast.Name) and isinstance(n.iter, ast.Name)
    }
    wrappers = {  # def tool(name): ... shutil.which(name) ...
        f.name
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef)
        for call in ast.walk(f)
        if is_which(call) and call.args and isinstance(call.args[0], ast.Name)
        if call.args[0].id in {a.arg for a in f.args.args}
    }
    found: list[set[str]] = []
    alternatives: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BoolOp) and all(is_which(v) for v in node.values):
            found.append({s for v in node.values for s in literal_strings(v.args[0])})
            alternatives |= {id(v) for v in node.values}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args or id(node) in alternatives:
            continue
        first = node.args[0]
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if is_which(node) or name in wrappers:
            names = literal_strings(first) or (loops.get(first.id, []) if isinstance(first, ast.Name) else [])
            found += [{n} for n in names]
        elif name in RUNNERS and isinstance(first, ast.List) and first.elts:
            found += [{n} for n in literal_strings(first.elts[0])]
    return found


def suite_programs() -> dict[str, set[str]]:
    """Program (or alternatives, joined by ' or ') -> the files that use it."""
    used: dict[str, set[str]] = {}
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "testkit").rglob("*.py")]):
        for names in programs_in(ast.parse(path.read_text())):
            used.setdefault(" or ".join(sorted(names)), set()).add(str(path.relative_to(ROOT)))
    return used


def test_the_scan_finds_the_programs_the_suite_is_known_to_run() -> None:
    used = suite_programs()
    for known in ("podman", "mmdebstrap", "promtool", "amtool", "prometheus", "bash"):
        assert known in used, sorted(used)
    assert "alertmanager or prometheus-alertmanager" in used, sorted(used)


def test_every_program_the_suite_runs_is_installed_by_make_test() -> None:
    tools = set(make_variable("TEST_TOOLS"))
    venv = ROOT / ".venv" / "bin"
    missing = {
        program: files
        for program, files in suite_programs().items()
        if not any(n in tools or n in ESSENTIAL or (venv / n).exists() for n in program.split(" or "))
    }
    assert not missing, f"the suite runs these, but the Makefile's TEST_TOOLS lacks them: {missing}"
    needed = {need for tool in tools for need in NEEDS.get(tool, ())}
    assert needed <= tools, f"TEST_TOOLS lacks what its tools need: {needed - tools}"


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="which package holds a program is asked of dpkg")
def test_every_test_tool_comes_from_a_test_package() -> None:
    """TEST_PACKAGES, installed with --no-install-recommends, provide every one of TEST_TOOLS."""
    packages = set(make_variable("TEST_PACKAGES"))
    for tool in make_variable("TEST_TOOLS"):
        path = shutil.which(tool, path=SBIN_PATH)
        assert path, f"{tool} is not installed: run `make test-deps`"
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True, timeout=30)
        package = owner.stdout.split(":")[0]
        assert package in packages, f"{tool} ({path}) comes from {package or owner.stderr}, not in TEST_PACKAGES"

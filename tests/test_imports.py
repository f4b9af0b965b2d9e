"""The import rules that keep the layers apart, read from the code itself (tests/import_rules.py).

shared/ is the library and imports nothing of the project above it; the sender and the
listener use only shared/ (never each other, never the application); the application
(probe_stack/) may use them all but the emulator only where it runs it; the deploy
generators (probe_deploy/) stand alone; bench/ never uses test code; and no module imports
itself through a cycle. Inside probe_stack/ the rooms keep their order: the commands may use
every room, the runtime only the metrics program's directory and address, the metrics program
only the verdict, and the verdict none. "Use" covers importlib, `__import__` and `-m` too, and
each way around the rules is shown caught on a small tree of its own below.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.import_rules import cycles, graph, packages, problems

# package -> the other project packages it may use
ALLOWED = {
    "shared": set(),
    "probe_sender": {"shared"},
    "probe_listener": {"shared"},
    "probe_stack": {"shared", "probe_sender", "probe_listener", "probe_deploy", "emulator"},
    "probe_deploy": set(),
    "probe_docs": {"bench"},  # names bench's commands on the performance page; reads its results as files
    "emulator": {"shared"},
    "testkit": {"emulator", "shared", "probe_stack"},  # tests' and bench's kit (runs `probe`); runtime never uses it
    # it times the sender's collector alone, and the status page's queries and render
    "bench": {"testkit", "emulator", "shared", "probe_sender", "probe_stack"},
    "tests": {
        "shared",
        "probe_sender",
        "probe_listener",
        "probe_stack",
        "probe_deploy",
        "probe_docs",
        "emulator",
        "testkit",
    },
}
# package -> room -> the other rooms of it that room may use
ROOMS = {
    "probe_stack": {
        "commands": {"runtime", "metrics", "verdict"},
        "runtime": {"metrics"},  # the metrics directory it resets, the address it prints
        "metrics": {"verdict"},
        "verdict": set(),
    },
}


def test_every_package_and_room_keeps_its_rules() -> None:
    assert not (found := problems(ROOT, ALLOWED, ROOMS)), found


def test_the_application_imports_the_emulator_only_inside_the_command_that_runs_it() -> None:
    eager = [
        f"{use.source} uses {use.target} at module level ({use.how})"
        for use in graph(ROOT)
        if use.source.startswith("probe_stack") and use.top and use.target.startswith("emulator")
    ]
    assert not eager, eager


def test_there_is_no_import_cycle() -> None:
    assert not (found := cycles(ROOT)), found


def test_the_rules_see_real_imports() -> None:
    """The checks above would pass on an empty graph; make sure they read the code."""
    uses = {(u.source, u.target): u for u in graph(ROOT)}
    assert ("probe_sender.sender", "shared.store") in uses
    lazy = uses[("probe_stack.commands.cli", "probe_stack.runtime.run")]
    assert not lazy.top and lazy.how == "import"
    assert uses[("testkit.probe", "probe_stack.commands.cli")].how == "-m"
    assert {"shared", "probe_stack", "probe_deploy", "tests"} <= packages(ROOT)
    assert len({u.source for u in uses.values()}) > 40


# The dodges, each on a tree of its own: a clean tree has no problems, and one file more has one.


@pytest.fixture
def tree(tmp_path: Path) -> Callable[[str, str], list[str]]:
    for package in ("shared", "probe_sender", "probe_listener", "probe_stack", "probe_stack/commands"):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    for room in ("runtime", "metrics", "verdict"):
        (tmp_path / "probe_stack" / room).mkdir()
        (tmp_path / "probe_stack" / room / "__init__.py").write_text("")
    (tmp_path / "probe_listener" / "receiver.py").write_text("")
    (tmp_path / "probe_stack" / "commands" / "cli.py").write_text("import probe_stack.runtime\n")
    (tmp_path / "supervisord.conf").write_text("command=python -P -m probe_listener\n")
    assert problems(tmp_path, ALLOWED, ROOMS) == []

    def add(path: str, text: str) -> list[str]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        return problems(tmp_path, ALLOWED, ROOMS)

    return add


DODGES = {
    "import statement": ("probe_sender/a.py", "import probe_listener.receiver\n"),
    "importlib.import_module": (
        "probe_sender/a.py",
        "import importlib\nimportlib.import_module('probe_listener.receiver')\n",
    ),
    "import_module imported by name": (
        "probe_sender/a.py",
        "from importlib import import_module\n\ndef f():\n    return import_module('probe_listener')\n",
    ),
    "__import__": ("probe_sender/a.py", "def f():\n    return __import__('probe_listener.receiver')\n"),
    "runpy.run_module": ("probe_sender/a.py", "import runpy\n\ndef f():\n    runpy.run_module('probe_listener')\n"),
    "-m in an argument list": ("probe_sender/a.py", "import sys\nCMD = [sys.executable, '-m', 'probe_listener']\n"),
    "-m in a command line string": ("probe_sender/a.py", "CMD = 'python -P -m probe_listener.receiver'\n"),
}


@pytest.mark.parametrize("dodge", DODGES)
def test_each_way_of_using_a_forbidden_package_is_caught(tree: Callable[[str, str], list[str]], dodge: str) -> None:
    found = tree(*DODGES[dodge])
    assert len(found) == 1 and found[0].startswith("probe_sender.a uses probe_listener"), found


def test_a_docstring_that_mentions_a_program_uses_nothing(tree: Callable[[str, str], list[str]]) -> None:
    assert tree("probe_sender/a.py", '"""Not `python -m probe_listener`: that is the other one."""\n') == []


def test_a_new_package_has_no_rules_until_it_is_given_some(tree: Callable[[str, str], list[str]]) -> None:
    assert tree("newcomer/__init__.py", "") == ["newcomer/ is a package with no import rules: add it to the rules"]


def test_a_module_outside_every_room_is_caught(tree: Callable[[str, str], list[str]]) -> None:
    assert tree("probe_stack/flat.py", "") == [
        "probe_stack.flat is in no room of probe_stack: add its room to the rules"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "from probe_stack.commands import cli\n",
        "from ..commands import cli\n",
        "CMD = ['-m', 'probe_stack.commands.cli']\n",
    ],
)
def test_a_room_using_a_room_above_it_is_caught(tree: Callable[[str, str], list[str]], text: str) -> None:
    found = tree("probe_stack/metrics/server.py", text)
    assert len(found) == 1 and "room metrics may not use room commands" in found[0], found


def test_the_front_door_is_no_room(tree: Callable[[str, str], list[str]]) -> None:
    """`python -m probe_stack` (its __main__) is the whole command: any room may name it."""
    tree("probe_stack/__main__.py", "from probe_stack.commands.cli import main\n")
    assert tree("probe_stack/runtime/run.py", "CMD = ['python', '-m', 'probe_stack']\n") == []


@pytest.mark.parametrize("where", ["supervisord.conf", "Makefile", "Dockerfile"])
def test_configuration_that_starts_a_missing_module_is_caught(
    tree: Callable[[str, str], list[str]], where: str
) -> None:
    found = tree(where, "command=python -m probe_stack.metrics_server\n")
    assert found == [f"{where} starts probe_stack.metrics_server, which is no module of the tree"]


def test_a_console_script_of_a_missing_module_is_caught(tree: Callable[[str, str], list[str]]) -> None:
    found = tree("pyproject.toml", '[project.scripts]\nprobe = "probe_stack.cli:main"\n')
    assert found == ["pyproject.toml starts probe_stack.cli, which is no module of the tree"]


def test_a_cycle_through_a_lazy_import_is_caught(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("")
    (tmp_path / "shared" / "a.py").write_text("import shared.b\n")
    (tmp_path / "shared" / "b.py").write_text("def f():\n    import shared.a\n")
    (tmp_path / "shared" / "c.py").write_text("CMD = ['-m', 'shared.a']\n")  # starts it: no import
    assert cycles(tmp_path) == [["shared.a", "shared.b", "shared.a"]]

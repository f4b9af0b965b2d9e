"""Every command the README and docs/ show is real: a Make target, a `probe` subcommand whose flags
parse, a `python -m` module of the tree; and every file of the repository they name exists.

Nothing is started: `probe` lines are parsed by the CLI's own parser (a dry parse), `make`
lines are looked up among the Makefile's targets, modules and paths in the tree.
"""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from probe_stack.commands.cli import build_parser
from tests.helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_TAGS = ("sh", "bash", "console")
FENCE = re.compile(r"^\s*```(\w*)")
INLINE = re.compile(r"`((?:\.venv/bin/)?(?:probe|make) [^`]+)`")
COMMAND = re.compile(r"^(?:\$ )?(?:[A-Z_]+=\S* )*((?:\.venv/bin/)?probe|make)(?: |$)")
MODULE = re.compile(r"python -m ([a-z_][\w.]*)")
# a path of the repository in a code span: a top-level directory of ours, then the rest
REPO_PATH = re.compile(r"`((?:deploy|docs|bench|tests|shared|probe_[a-z]+|emulator)/[\w./-]*)")
ENDS_A_COMMAND = {">", ">>", "|", "&&", "||", ";", "&", "2>&1"}


def shown_commands() -> list[tuple[str, str]]:
    """(where, command line) of every `probe`/`make` line in a shell block or inline code span."""
    found: dict[str, str] = {}
    for doc in DOCS:
        text = doc.read_text()
        for line in block_commands(text):
            found.setdefault(line, doc.name)
        for span in INLINE.findall(text):
            found.setdefault(span, doc.name)
    return [(where, line) for line, where in found.items()]


def block_commands(text: str) -> list[str]:
    """The `probe`/`make` lines of a page's code blocks.

    Shell blocks are those tagged sh/bash/console, plus any line written after a `$ ` prompt;
    an untagged block without a prompt is a diagram, not commands.
    """
    lines = []
    block: str | None = None  # the open block's tag ("" when untagged), None outside blocks
    for raw in text.splitlines():
        fence, line = FENCE.match(raw), raw.strip()
        if fence:
            block = fence.group(1) if block is None else None
        elif block is not None and (block in SHELL_TAGS or line.startswith("$ ")) and COMMAND.match(line):
            lines.append(line)
    return lines


def words(line: str) -> list[str]:
    """The command's own words: no prompt, no leading VAR=value, no comment, redirection or pipe after it."""
    tokens = shlex.split(line.removeprefix("$ "), comments=True)
    while tokens and re.fullmatch(r"[A-Z_]+=.*", tokens[0]):
        tokens.pop(0)
    for i, token in enumerate(tokens):
        if token in ENDS_A_COMMAND:
            return tokens[:i]
    return tokens


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


COMMANDS = shown_commands()


def test_the_docs_show_the_commands_this_test_is_about() -> None:
    lines = {line for _, line in COMMANDS}
    assert any("probe emulator --port" in line for line in lines), "docs/emulator.md's emulator line is gone"
    assert any(line.startswith("make test") for line in lines)
    assert len(lines) > 20


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_a_shown_command_is_real(where: str, line: str) -> None:
    tokens = words(line)
    program, args = tokens[0], tokens[1:]
    if program == "make":
        unknown = [t for t in args if not t.startswith("-") and "=" not in t and t not in make_targets()]
        assert not unknown, f"{where}: `{line}` names no Make target {unknown}"
        return
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `{line}` does not parse (exit {exc.code})") from None


def test_every_subcommand_answers_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    for name in subcommands:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0, name
        assert f"usage: probe {name}" in capsys.readouterr().out, name


def test_the_installed_probe_emulator_lists_its_flags() -> None:
    """docs/emulator.md's own line, through the installed entry point."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "probe"), "emulator", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert all(flag in result.stdout for flag in ("--port", "--dataset", "--faults", "--seed")), result.stdout


def named(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    """(page, match) of a pattern over every page, each match once."""
    found: dict[str, str] = {}
    for doc in DOCS:
        for match in pattern.findall(doc.read_text()):
            found.setdefault(match, doc.name)
    return [(where, match) for match, where in found.items()]


MODULES = named(MODULE)
PATHS = named(REPO_PATH)


def test_the_docs_name_modules_and_files() -> None:
    assert any(m == "bench.status_page" for _, m in MODULES) and len(PATHS) > 20


@pytest.mark.parametrize(("where", "module"), MODULES, ids=[f"{w}: {m}" for w, m in MODULES])
def test_a_shown_python_module_is_in_the_tree(where: str, module: str) -> None:
    base = ROOT.joinpath(*module.split("."))
    assert (base / "__main__.py").exists() or base.with_suffix(".py").exists(), f"{where}: no module {module}"


@pytest.mark.parametrize(("where", "path"), PATHS, ids=[f"{w}: {p}" for w, p in PATHS])
def test_a_named_file_of_the_repository_exists(where: str, path: str) -> None:
    assert (ROOT / path).exists(), f"{where}: `{path}` is not in the repository"

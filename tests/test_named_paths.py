"""What the repository's own words point at exists: every file or folder, module, README section
and docs anchor that a comment, a docstring, a deploy file or a page names.

A move or a rename leaves such pointers behind where no import breaks (a docstring naming the
config module's old single file, a rules file naming the test that used to run it, a README
section that went to docs/); the next engineer follows them to nothing. Python files are read for their comments
and docstrings only: their string literals may name paths on purpose that do not exist.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from functools import cache
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.test_docs import anchors

TEXT_SUFFIXES = {".md", ".yml", ".yaml", ".toml", ".conf", ".cfg", ".ini", ".sh"}
TEXT_NAMES = {"Makefile", "Dockerfile", "Pipfile", ".dockerignore", ".gitignore", "run"}
# a file name's suffix, not a module's attribute (`emulator.md`, `probe_stack.json`)
FILE_SUFFIXES = {"md", "py", "yml", "yaml", "json", "toml", "conf", "png", "csv", "sqlite3", "txt", "env", "log"}


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


FILES = tracked()
TOPS = sorted({f.split("/", 1)[0] for f in FILES if "/" in f and not f.startswith(".")})
PACKAGES = sorted(t for t in TOPS if (ROOT / t / "__init__.py").exists())
REPO_PATH = re.compile(rf"(?<![\w/.-])((?:{'|'.join(map(re.escape, TOPS))})/[\w./-]*\w)")
MODULE = re.compile(rf"(?<![\w/.-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)")
README_SECTION = re.compile(r'README(?:\.md)?\s*\(?"([^"]+)"')
DOCS_ANCHOR = re.compile(r"(docs/[\w-]+\.md)#([\w-]+)")


def python_prose(source: str) -> str:
    """A Python file's comments and docstrings: the parts written for a reader."""
    parts = [
        tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(ast.get_docstring(node) or "")
    return "\n".join(parts)


def prose(path: str) -> str:
    file = ROOT / path
    if file.suffix == ".py":
        return python_prose(file.read_text())
    if file.suffix in TEXT_SUFFIXES or file.name in TEXT_NAMES:
        return file.read_text()
    return ""


def ignored(paths: list[str]) -> set[str]:
    """The paths git ignores: a user's own files (deploy/probe.env), never in the repository."""
    if not paths:
        return set()
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(paths),
        capture_output=True,
        text=True,
    )
    return set(result.stdout.split())


@cache
def module_names(module: Path) -> set[str]:
    """The names a module binds at its top level, and its submodules when it is a package."""
    file = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
    names = {p.stem for p in module.iterdir()} if module.is_dir() else set()
    if file.exists():
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def module_exists(dotted: str) -> bool:
    """`pkg.module`, `pkg.module.name` or `pkg.module.Class.attr`: the module exists and binds the name."""
    parts = dotted.split(".")
    if parts[-1] in FILE_SUFFIXES:
        return True
    path = ROOT / parts[0]
    for i, part in enumerate(parts[1:], 1):
        if (path / part).is_dir() or (path / f"{part}.py").exists():
            path = path / part
            continue
        return part in module_names(path) and len(parts) - i <= 2
    return True


def pointers() -> list[tuple[str, str, str]]:
    """(kind, file, what it names) of every pointer in the repository's prose, each once per file."""
    found: dict[tuple[str, str, str], None] = {}
    for f in FILES:
        text = prose(f)
        for p in REPO_PATH.findall(text):
            if not any(c in p for c in "*{<"):
                found[("path", f, p.rstrip("."))] = None
        for m in MODULE.findall(text):
            found[("module", f, m)] = None
        for s in README_SECTION.findall(text):
            found[("readme section", f, s)] = None
        for page, anchor in DOCS_ANCHOR.findall(text):
            found[("docs anchor", f, f"{page}#{anchor}")] = None
    return list(found)


POINTERS = pointers()


def test_the_prose_names_enough_to_be_worth_checking() -> None:
    kinds = {kind for kind, _, _ in POINTERS}
    assert {"path", "module", "docs anchor"} <= kinds and len(POINTERS) > 200, kinds


def test_every_named_path_exists() -> None:
    missing = [(f, p) for kind, f, p in POINTERS if kind == "path" and not (ROOT / p).exists()]
    users = ignored(sorted({p for _, p in missing}))
    stale = [f"{f}: {p}" for f, p in missing if p not in users]
    assert not stale, "named but not in the repository:\n" + "\n".join(stale)


def test_every_named_module_exists() -> None:
    stale = [f"{f}: {m}" for kind, f, m in POINTERS if kind == "module" and not module_exists(m)]
    assert not stale, "named but no such module or name:\n" + "\n".join(stale)


def test_every_named_readme_section_and_docs_anchor_exists() -> None:
    readme = {h.strip() for h in re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)}
    stale = []
    for kind, f, what in POINTERS:
        if kind == "readme section" and what not in readme:
            stale.append(f'{f}: README "{what}" (moved to docs/?)')
        elif kind == "docs anchor":
            page, anchor = what.split("#")
            if not (ROOT / page).exists() or anchor not in anchors(ROOT / page):
                stale.append(f"{f}: {what}")
    assert not stale, "named but not there:\n" + "\n".join(stale)


@pytest.mark.parametrize(
    ("dotted", "exists"),
    [
        ("probe_stack.commands.cli", True),
        ("probe_stack.commands.cli.main", True),
        ("shared.config.Config", True),
        ("probe_stack.cli", False),
        ("probe_stack.metrics_server", False),
        ("emulator.client", False),
        ("shared.config.no_such_name", False),
    ],
)
def test_a_module_pointer_is_resolved_in_the_tree(dotted: str, exists: bool) -> None:
    assert module_exists(dotted) is exists

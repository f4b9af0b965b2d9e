"""Each generated part of docs/ made from its source: the layout table, the settings table, the
performance page; and which pages differ from what their sources give now."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from probe_docs import performance

ROOT = Path(__file__).resolve().parent.parent
END = "<!-- end generated -->"
# top-level directories that are code but not a package of the layout
NOT_LAID_OUT = {"tests"}
# the library first, then what stands on it; any other package after these, by name
LAYERS = ("shared", "probe_sender", "probe_listener", "probe_stack", "emulator")


def first_sentence(docstring: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line (empty when there is none)."""
    paragraph = " ".join((docstring or "").strip().split("\n\n", 1)[0].split())
    for end in (". ", "? "):
        if end in paragraph:
            paragraph = paragraph.split(end, 1)[0] + end.strip()
    return paragraph.replace("|", "\\|")


def packages(root: Path) -> list[Path]:
    """Every package of the tree but the tests, subpackages after their parent, layers in order."""
    tops = [d for d in root.iterdir() if (d / "__init__.py").exists() and d.name not in NOT_LAID_OUT]
    found = [init.parent for top in tops for init in top.rglob("__init__.py")]

    def key(package: Path) -> tuple[int, tuple[str, ...]]:
        parts = package.relative_to(root).parts
        return (LAYERS.index(parts[0]) if parts[0] in LAYERS else len(LAYERS), parts)

    return sorted(found, key=key)


def layout_table(root: Path = ROOT) -> str:
    """A row per package (its own docstring) and per module (its first docstring sentence)."""
    rows = ["| module | what it is |", "|---|---|"]
    for package in packages(root):
        name = package.relative_to(root).as_posix()
        rows.append(f"| **`{name}/`** | {first_sentence(docstring(package / '__init__.py'))} |")
        for module in sorted(package.glob("*.py")):
            if module.name != "__init__.py":
                rows.append(f"| `{name}/{module.name}` | {first_sentence(docstring(module))} |")
    return "\n".join(rows)


def docstring(path: Path) -> str | None:
    return ast.get_docstring(ast.parse(path.read_text(), str(path)))


def settings_table(root: Path = ROOT) -> str:
    """`probe config docs`, through the installed entry point beside this interpreter."""
    probe = Path(sys.executable).parent / "probe"
    result = subprocess.run([str(probe), "config", "docs"], cwd=root, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SystemExit(f"probe_docs: `probe config docs` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def splice(text: str, name: str, content: str) -> str:
    """`text` with the region `<!-- generated: name -->` ... END replaced by `content`."""
    start = f"<!-- generated: {name} -->"
    if start not in text or END not in text.split(start, 1)[1]:
        raise SystemExit(f"probe_docs: no region {start} ... {END}")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{content}\n{END}{rest.split(END, 1)[1]}"


def pages(root: Path = ROOT) -> dict[Path, Callable[[str], str]]:
    """page -> how its new text is made from its present text."""
    docs = root / "docs"
    return {
        docs / "performance.md": lambda _: performance.render(root / "bench" / "results"),
        docs / "development.md": lambda text: splice(text, "the layout", layout_table(root)),
        docs / "settings.md": lambda text: splice(text, "probe config docs", settings_table(root)),
    }


def stale_pages(root: Path = ROOT) -> list[tuple[Path, str, str]]:
    """(page, its text, what it should be) of every generated page that differs from its sources."""
    stale = []
    for page, make in pages(root).items():
        old = page.read_text() if page.exists() else ""
        new = make(old)
        if new != old:
            stale.append((page, old, new))
    return stale

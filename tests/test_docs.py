"""The README and docs/ as references: short, generated where they restate the code, linked
correctly, listing every metric, and written for users rather than as development notes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from probe_docs.generate import stale_pages
from shared import metrics
from tests.helpers import ROOT

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DEVELOPMENT_NOTES = re.compile(r"\bissue \d+|\bthis session|\blast session|\bdesign card", re.I)


def section(text: str, heading: str) -> str:
    """The text under a heading (`## X` or `# X`), up to the next heading of the same level or above."""
    level = len(heading.split(" ", 1)[0])
    body = ("\n" + text).split(f"\n{heading}\n", 1)[1]
    return re.split(rf"\n#{{1,{level}}} ", body, maxsplit=1)[0]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}


def test_the_readme_is_read_in_ten_minutes() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move reference text to docs/"


def test_the_way_to_a_real_platform_is_one_section_of_five_steps() -> None:
    steps = section(README.read_text(), "## Go live in five steps")
    assert re.findall(r"^(\d)\. ", steps, re.M) == list("12345")
    for needed in ("probe config check", "probe check", "make run-script", "docker run", "probe-rules.yml"):
        assert needed in steps, needed


def test_the_generated_pages_are_what_their_sources_give() -> None:
    """docs/performance.md, the layout table and the settings table: `make docs` wrote them from
    the bench results, the tree and `probe config docs` as they are now."""
    stale = [str(page.relative_to(ROOT)) for page, _, _ in stale_pages(ROOT)]
    assert not stale, f"{stale}: run `make docs`"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_reaches_a_file_and_its_heading(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_page_speaks_to_users_not_of_how_it_was_made(page: Path) -> None:
    found = DEVELOPMENT_NOTES.findall(page.read_text())
    assert not found, f"{page.name}: development notes {found}"


def defined_metrics() -> set[str]:
    """Every metric name of shared/metrics.py: its metric objects (in dicts too) and the names it
    creates later (the latency histogram, whose buckets come from the configuration)."""
    found = set()
    for value in vars(metrics).values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, MetricWrapperBase):
                found.add(item._name)
    tree = ast.parse(Path(metrics.__file__).read_text())
    constants = (n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return found | {c for c in constants if re.fullmatch(r"probe_[a-z0-9_]*[a-z0-9]", c)}


def table_names(text: str) -> set[str]:
    """Metric names in the first cell of a table's rows."""
    names: set[str] = set()
    for cell in re.findall(r"^\| ([^|]+) \|", text, re.M):
        names.update(re.findall(r"`(probe_[a-z0-9_]+)`", cell))
    return names


def test_the_metrics_page_lists_every_metric_the_code_defines_and_no_other() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    reference = text.split("\n## ", 1)[0]
    defined = defined_metrics()
    assert defined, "no metric found in shared.metrics"
    listed = table_names(reference)
    # a metric only some setups export is described beside the table, not in it
    undocumented = sorted(n for n in defined if n not in listed and f"`{n}`" not in reference)
    assert not undocumented, f"docs/metrics.md does not describe {undocumented}"
    unknown = sorted(listed - defined)
    assert not unknown, f"docs/metrics.md lists metrics the code does not define: {unknown}"


def test_the_readme_metrics_are_metrics_of_the_code() -> None:
    table = section(README.read_text(), "## Metrics").split("The original service's", 1)[0]
    listed = table_names(table)
    assert len(listed) >= 10, "the README's main metrics table was not found"
    assert listed <= defined_metrics(), sorted(listed - defined_metrics())

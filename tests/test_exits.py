"""The exit-status table: one per cause, and the table of docs/operating.md is that table."""

from __future__ import annotations

import re

from shared.exits import MEANING, ExitStatus
from tests.helpers import ROOT


def documented_table() -> str:
    """The section `## Exit statuses` of docs/operating.md, up to the next heading."""
    text = (ROOT / "docs" / "operating.md").read_text()
    return text.split("\n## Exit statuses\n", 1)[1].split("\n#", 1)[0]


def test_every_status_has_a_meaning_and_the_docs_list_each_once() -> None:
    assert set(MEANING) == set(ExitStatus)
    table = documented_table()
    documented = [int(n) for n in re.findall(r"^\s*\| (\d+) \|", table, flags=re.M)]
    assert documented == sorted(int(s) for s in ExitStatus)


def test_the_documented_row_of_a_status_names_every_command_that_gives_it_for_another_cause() -> None:
    """`probe check` and `probe health` exit 1 when what they check fails, and `probe ctl tail` 2: an
    operator reading the table for an exit status of theirs finds it, not only a FATAL program."""
    table = documented_table()
    rows = {int(n): text for n, text in re.findall(r"^\s*\| (\d+) \| (.*) \|$", table, flags=re.M)}
    assert "`probe check`" in rows[ExitStatus.FATAL] and "`probe health`" in rows[ExitStatus.FATAL]
    assert "probe check" in MEANING[ExitStatus.FATAL] and "probe health" in MEANING[ExitStatus.FATAL]
    assert "`probe ctl tail`" in rows[ExitStatus.CONFIG]
    assert "`probe check`" in rows[ExitStatus.OK] and "128 + the signal" in rows[ExitStatus.OK]

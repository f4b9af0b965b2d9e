"""The exit-status table: one per cause, and the README's table is that table."""

from __future__ import annotations

import re

from shared.exits import MEANING, ExitStatus
from tests.helpers import ROOT


def test_every_status_has_a_meaning_and_the_readme_lists_each_once() -> None:
    assert set(MEANING) == set(ExitStatus)
    text = (ROOT / "README.md").read_text()
    table = text.split("**Exit statuses**", 1)[1].split("\n* **", 1)[0]
    documented = [int(n) for n in re.findall(r"^\s*\| (\d+) \|", table, flags=re.M)]
    assert documented == sorted(int(s) for s in ExitStatus)

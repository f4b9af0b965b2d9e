"""die_with_parent: the child goes when its parent changed, and only then (not when the parent is pid 1)."""

from __future__ import annotations

import signal
import subprocess

from tests.helpers import PYTHON, ROOT

CHILD = """
import os, sys
from shared.parent import die_with_parent
die_with_parent(parent=int(sys.argv[1]) if len(sys.argv) > 1 else None)
print("alive", flush=True)
"""


def run_child(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", CHILD, *args], cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_the_child_stays_while_its_parent_is_the_one_it_expects() -> None:
    import os

    result = run_child(str(os.getpid()))
    assert (result.returncode, result.stdout) == (0, "alive\n"), result.stderr
    assert run_child().stdout == "alive\n"  # by default, the parent it has now


def test_the_child_goes_when_its_parent_is_not_the_one_it_expects() -> None:
    # As if the parent had died between fork and prctl: the expected pid is not the parent's.
    result = run_child("1")
    assert result.returncode == -signal.SIGTERM and result.stdout == ""

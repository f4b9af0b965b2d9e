"""What every program does at start to keep its secrets: no core dump, not dumpable (issue 22.12)."""

from __future__ import annotations

import json
import subprocess

from tests.helpers import PYTHON, ROOT

REPORT = """
import ctypes, json, resource
from shared import lifecycle
before = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
lifecycle.no_core_dumps()
after = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)
print(json.dumps([before, after, resource.getrlimit(resource.RLIMIT_CORE)]))
"""


def test_no_core_dumps_leaves_the_process_undumpable_with_no_core_limit() -> None:
    """The process-level view (RLIMIT_CORE of each real program, from /proc) is in the sender's and
    the stack's tests; the dumpable flag of another process cannot be read from outside, so here."""
    done = subprocess.run([PYTHON, "-c", REPORT], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    before, after, limit = json.loads(done.stdout)
    assert (before, after, limit) == (1, 0, [0, 0])

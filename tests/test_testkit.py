"""The test kit's own promises: a started process is stopped with its whole group, and nothing else."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from testkit.process import Proc, start, wait_until


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stopping_a_started_process_stops_what_it_started_in_its_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    proc = start(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], tmp_path / "sh.log")
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the grandchild"))
    assert os.getpgid(grandchild) == proc.popen.pid  # in the group the kit made, not the test runner's
    proc.stop()
    wait_until(lambda: not alive(grandchild), 10, "the grandchild gone with its group")


def test_a_process_started_by_hand_is_stopped_alone(tmp_path: Path) -> None:
    """Not a group leader: signalling `its` group would hit the test runner's."""
    popen = subprocess.Popen(["sleep", "300"])
    proc = Proc(popen, tmp_path / "none.log")
    assert proc.stop() == -15 and alive(os.getpid())

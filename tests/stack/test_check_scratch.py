"""`probe check` stopped by a signal leaves nothing behind; a kill -9's leftovers are swept by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from probe_stack.commands import scratch
from tests.helpers import ROOT, free_port, probe_cmd, wait_until

pytestmark = pytest.mark.timeout(180)
OTHER_UID = 65534


def check_env(tmp: Path, scratch_base: Path) -> dict[str, str]:
    """`probe check` against a platform that is not there: it waits for a subscription meanwhile."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_")}
    return {
        **env,
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "KEYCLOAK_SERVER": f"http://127.0.0.1:{port}/auth",
        "COLLECTOR_URL": f"http://127.0.0.1:{port}/event-collector/event/{{dataset_id}}/{{version}}",
        "WEBSOCKET_URL": f"ws://127.0.0.1:{port}/event-data-subscription",
        "PROBE_DB_PATH": str(tmp / "probe.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "TMPDIR": str(scratch_base),
    }


def ours(base: Path) -> list[Path]:
    return sorted(base.glob(scratch.CHECK_PREFIX + "*"))


def start_check(env: dict[str, str], base: Path) -> tuple[subprocess.Popen, Path]:
    before = set(ours(base))
    proc = subprocess.Popen(
        probe_cmd("check", "--timeout", "60"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    made = wait_until(lambda: [p for p in ours(base) if p not in before and (p / "check.sqlite3").exists()], 60, "dir")
    return proc, made[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_check_stopped_by_a_signal_removes_its_directory_without_a_traceback(tmp_path: Path, sig: int) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    proc, made = start_check(check_env(tmp_path, base), base)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and f"stopped by {signal.Signals(sig).name}" in err
    assert not made.exists() and ours(base) == []


def test_the_leftovers_of_a_killed_check_are_swept_by_the_next_and_nothing_else(tmp_path: Path) -> None:
    base = Path(tempfile.mkdtemp(dir=tmp_path))
    env = check_env(tmp_path, base)
    killed, left = start_check(env, base)
    killed.kill()
    killed.communicate(timeout=30)
    assert left.exists()  # SIGKILL: no chance to clean up

    # What the sweep must keep: a running check's, another user's, a link, and one without a record.
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    keep = {name: base / f"{scratch.CHECK_PREFIX}{name}" for name in ("running", "others", "unrecorded")}
    for path in keep.values():
        path.mkdir(mode=0o700)
    (keep["running"] / scratch.OWNER_FILE).write_text(f"{alive.pid} {scratch.process_start(alive.pid)}\n")
    (keep["others"] / scratch.OWNER_FILE).write_text((left / scratch.OWNER_FILE).read_text())
    os.chown(keep["others"], OTHER_UID, OTHER_UID)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("x")
    (base / f"{scratch.CHECK_PREFIX}link").symlink_to(victim)
    try:
        nxt, made = start_check(env, base)
        assert not left.exists()
        nxt.send_signal(signal.SIGTERM)
        nxt.communicate(timeout=60)
        assert not made.exists()
        assert all(path.exists() for path in keep.values()) and (victim / "precious").exists()
    finally:
        alive.stdin.close()  # type: ignore[union-attr]
        alive.wait(10)


def test_a_reused_pid_does_not_keep_a_record_alive() -> None:
    me = os.getpid()
    assert scratch.owner_alive(f"{me} {scratch.process_start(me)}")
    assert not scratch.owner_alive(f"{me} 1")  # same pid, another start: the owner is gone
    assert scratch.owner_alive("not a record")  # never judged dead

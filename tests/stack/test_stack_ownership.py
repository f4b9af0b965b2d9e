"""What a stack owns (its metrics directory, run directory and ports) under a second stack or another user."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from probe_stack.metrics import metrics_dir
from probe_stack.runtime import rundir
from probe_stack.runtime.ctl import CTL_QUICK_SECONDS, ctl_deadline
from shared.exits import ExitStatus
from tests.e2e.harness import stack_env
from tests.helpers import ROOT, EmulatorClient, Proc, free_port, probe_cmd, start, wait_until

pytestmark = pytest.mark.timeout(240)
OTHER_UID = 65534  # nobody: "another user" (the tests run as root in the container)


def run_once(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(probe_cmd("run"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def ctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(probe_cmd("ctl", *args), env=env, capture_output=True, text=True, timeout=60)


def quiet_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A configuration whose stack is refused before it starts anything (no emulator needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    return {
        **env,
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "PROBE_DB_PATH": str(tmp / "probe.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "PROBE_RUN_DIR": tempfile.mkdtemp(prefix="pq-"),
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(free_port()),
        **extra,
    }


@pytest.fixture
def first(emulator: EmulatorClient, tmp_path: Path) -> Iterator[tuple[Proc, dict[str, str]]]:
    """A running stack against the emulator."""
    env = stack_env(emulator, tmp_path / "first", tempfile.mkdtemp(prefix="pf-"), free_port(), 3.0)
    (tmp_path / "first").mkdir()
    proc = start(probe_cmd("run"), tmp_path / "first.log", env=env)
    url = f"http://127.0.0.1:{env['METRICS_PORT']}/metrics"
    try:
        wait_until(lambda: "probe_events_posted_total{" in requests.get(url, timeout=2).text, 60, "the first stack")
        yield proc, env
    finally:
        proc.stop(signal.SIGTERM, timeout=60)


def posted(env: dict[str, str]) -> float:
    text = requests.get(f"http://127.0.0.1:{env['METRICS_PORT']}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("probe_events_posted_total{")
    )


def test_a_second_stack_on_the_metrics_or_run_directory_is_refused_and_changes_nothing(
    first: tuple[Proc, dict[str, str]], tmp_path: Path
) -> None:
    proc, env = first
    wait_until(lambda: posted(env) >= 3, 30, "a few events posted")
    metrics = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    files_before = {p.name for p in metrics.iterdir()}
    conf = Path(env["PROBE_RUN_DIR"]) / "supervisorctl.conf"
    conf_before = conf.read_bytes()
    (tmp_path / "second").mkdir()

    # Another configuration in the same directory: its own store, the same metrics directory.
    second = {**env, "PROBE_DB_PATH": str(tmp_path / "second" / "probe.sqlite3")}
    second.update(PROBE_RUN_DIR=tempfile.mkdtemp(prefix="ps-"), METRICS_PORT=str(free_port()))
    before = posted(env)
    result = run_once(second)
    assert result.returncode == ExitStatus.BUSY, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metrics directory" in lines[0] and f"pid {proc.popen.pid}" in lines[0], lines
    assert files_before <= {p.name for p in metrics.iterdir()}  # nothing wiped
    assert posted(env) >= before  # and the first stack's counts never went back

    # The same run directory: refused before its supervisorctl.conf is touched; ctl still works.
    third = {**env, "PROBE_DB_PATH": str(tmp_path / "second" / "probe.sqlite3")}
    third.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "second" / "metrics"), METRICS_PORT=str(free_port()))
    result = run_once(third)
    assert result.returncode == ExitStatus.BUSY, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "run directory" in result.stderr
    assert conf.read_bytes() == conf_before
    assert not (tmp_path / "second" / "metrics").exists()
    status = ctl(env, "status")
    assert status.returncode == 0 and "sender" in status.stdout and "RUNNING" in status.stdout, status


@pytest.mark.parametrize("how", ["world-writable", "another user's"])
def test_a_metrics_directory_others_can_write_is_refused(tmp_path: Path, how: str) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    if how == "world-writable":
        metrics.chmod(0o1777)
    else:
        os.chown(metrics, OTHER_UID, OTHER_UID)
    result = run_once(quiet_env(tmp_path))
    assert result.returncode == ExitStatus.CONFIG, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "PROMETHEUS_MULTIPROC_DIR" in result.stderr
    assert list(metrics.iterdir()) == []  # not even marked


def test_the_metrics_directory_rules() -> None:
    assert metrics_dir.mode_problem(0o40700, 1000, 1000) is None
    assert metrics_dir.mode_problem(0o40755, 1000, 1000) is None
    assert metrics_dir.mode_problem(0o41777, 1000, 1000) == "is writable by other users (mode 1777)"
    assert metrics_dir.mode_problem(0o40775, 1000, 1000) == "is writable by other users (mode 775)"
    assert metrics_dir.mode_problem(0o40700, 0, 1000) == "belongs to another user"


def test_a_port_bound_but_not_listening_is_found_busy_before_anything_starts(tmp_path: Path) -> None:
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))  # bound, never listening: a connection to it is refused
    try:
        port = squatter.getsockname()[1]
        started = time.monotonic()
        result = run_once(quiet_env(tmp_path, METRICS_PORT=str(port)))
        assert result.returncode == ExitStatus.CONFIG, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and f"METRICS_PORT {port}" in result.stderr
        assert not (tmp_path / "metrics").exists() or list((tmp_path / "metrics").iterdir()) == []
        assert time.monotonic() - started < 30  # refused at once, not after the programs went FATAL
    finally:
        squatter.close()


def test_ctl_gives_up_on_a_supervisord_that_never_answers(tmp_path: Path) -> None:
    """A stopped (SIGSTOP) supervisord: its socket accepts connections, and nothing ever answers."""
    run_dir = Path(tempfile.mkdtemp(prefix="pc-"))
    hung = socket.socket(socket.AF_UNIX)
    hung.bind(str(run_dir / "supervisor.sock"))
    hung.listen(16)
    (run_dir / "supervisorctl.conf").write_text(
        f"[supervisorctl]\nserverurl=unix://{run_dir}/supervisor.sock\nusername=probe\npassword=x\n"
    )
    try:
        started = time.monotonic()
        result = ctl(quiet_env(tmp_path, PROBE_RUN_DIR=str(run_dir)), "status")
        took = time.monotonic() - started
    finally:
        hung.close()
    assert result.returncode == ExitStatus.FATAL
    assert "did not answer" in result.stderr and "Traceback" not in result.stderr
    assert took < CTL_QUICK_SECONDS + 30


def test_the_ctl_deadline_by_command() -> None:
    assert ctl_deadline([]) == ctl_deadline(["status"]) == CTL_QUICK_SECONDS
    assert ctl_deadline(["restart", "sender"]) > 40  # the sender's stopwaitsecs


def test_a_squatted_default_run_directory_gives_way_to_one_of_our_own_that_ctl_finds(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    shared_tmp = Path(tempfile.mkdtemp(prefix="pt-"))  # short: a socket path has at most 107 bytes
    shared_tmp.chmod(0o1777)  # as /tmp
    (tmp_path / "one").mkdir()
    env = stack_env(emulator, tmp_path / "one", "", free_port(), 3.0, TMPDIR=str(shared_tmp))
    del env["PROBE_RUN_DIR"]
    env.pop("XDG_RUNTIME_DIR", None)
    squatted = shared_tmp / rundir.default(env["PROBE_DB_PATH"], {}).name  # the name another user predicts
    squatted.mkdir(mode=0o700)
    os.chown(squatted, OTHER_UID, OTHER_UID)
    proc = start(probe_cmd("run"), tmp_path / "stack.log", env=env)
    try:

        def status() -> str:
            return ctl(env, "status").stdout

        wait_until(lambda: "sender" in status() and "RUNNING" in status(), 60, "ctl to find the stack")
        assert "not using it" in proc.output() and str(squatted) in proc.output()
        used = rundir.recorded(env["PROBE_DB_PATH"])
        assert used is not None and used.parent == shared_tmp and used != squatted
        assert stat.S_IMODE(used.stat().st_mode) == 0o700
        assert list(squatted.iterdir()) == []  # the other user's directory was never used
    finally:
        assert proc.stop(signal.SIGTERM, timeout=60) == ExitStatus.OK


def test_the_default_run_directory_prefers_a_private_runtime_directory(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    store = str(tmp_path / "probe.sqlite3")
    assert rundir.default(store, {"XDG_RUNTIME_DIR": str(runtime)}).parent == runtime
    runtime.chmod(0o755)
    assert rundir.default(store, {"XDG_RUNTIME_DIR": str(runtime)}).parent != runtime
    assert rundir.default(store, {"XDG_RUNTIME_DIR": "relative"}).parent != Path("relative")
    # A record naming a directory that is not private and ours is not followed.
    Path(store + ".rundir").write_text(f"{runtime}\n")
    assert rundir.recorded(store) is None
    runtime.chmod(0o700)
    assert rundir.recorded(store) == runtime

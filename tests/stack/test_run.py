"""`probe run` under mistakes: nothing not ours deleted, one stack per store, no orphans, clean stops."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
import requests

from shared.exits import ExitStatus
from shared.store import Store
from tests.e2e.harness import stack_env
from tests.helpers import PYTHON, ROOT, EmulatorClient, Proc, free_port, probe_cmd, start, wait_until

pytestmark = pytest.mark.timeout(180)


def run_once(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(probe_cmd("run"), env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A developer's environment without their probe settings, on a free metrics port (8000 may be a demo's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    defaults = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "METRICS_PORT": str(free_port()),
    }
    return {**env, **defaults, **extra}


def test_a_metrics_directory_holding_the_store_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Store(data / "probe.sqlite3") as store:
        app_id = store.app_id()
    (data / "notes.txt").write_text("mine")
    env = base_env(tmp_path, PROBE_DB_PATH=str(data / "probe.sqlite3"), PROMETHEUS_MULTIPROC_DIR=str(data))
    result = run_once(env, tmp_path)
    assert result.returncode == ExitStatus.CONFIG, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "PROMETHEUS_MULTIPROC_DIR" in result.stderr
    assert (data / "notes.txt").read_text() == "mine"
    with Store(data / "probe.sqlite3") as store:
        assert store.app_id() == app_id


def test_an_empty_metrics_directory_setting_never_wipes_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    result = run_once(base_env(tmp_path, PROMETHEUS_MULTIPROC_DIR=""), tmp_path)
    assert result.returncode == ExitStatus.CONFIG and "PROMETHEUS_MULTIPROC_DIR" in result.stderr
    assert (tmp_path / "keep.txt").exists()


def test_a_metrics_directory_with_foreign_files_is_refused_at_start(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "report.csv").write_text("x")
    env = base_env(
        tmp_path,
        PROBE_DB_PATH=str(tmp_path / "probe.sqlite3"),
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        METRICS_PORT=str(free_port()),
    )
    result = run_once(env, tmp_path)
    assert result.returncode == ExitStatus.CONFIG and "report.csv" in result.stderr
    assert (metrics / "report.csv").exists()


def test_a_shared_run_directory_is_refused_and_never_chmodded(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env = base_env(
        tmp_path,
        PROBE_DB_PATH=str(tmp_path / "probe.sqlite3"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PROBE_RUN_DIR=str(shared),
    )
    result = run_once(env, tmp_path)
    assert result.returncode == ExitStatus.CONFIG and "is not private" in result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert not (tmp_path / "metrics").exists()  # refused before anything was touched


class Running:
    """A supervised stack against the emulator, started in the test."""

    def __init__(self, emulator: EmulatorClient, tmp: Path, tag: str, cwd: Path | None = None) -> None:
        self.run_dir = tempfile.mkdtemp(prefix="pt-")
        port = free_port()
        self.env = stack_env(emulator, tmp, self.run_dir, port, 3.0)
        self.url = f"http://127.0.0.1:{port}"
        log = tmp / f"stack-{tag}.log"
        if cwd is None:
            self.proc: Proc = start(probe_cmd("run"), log, env=self.env)
        else:  # as an operator starts it: the installed command, in their working directory
            with open(log, "ab") as out:
                command = [str(Path(PYTHON).parent / "probe"), "run"]
                popen = subprocess.Popen(command, cwd=cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            self.proc = Proc(popen, log)

    def ctl(self, *args: str) -> str:
        result = subprocess.run(probe_cmd("ctl", *args), env=self.env, capture_output=True, text=True, timeout=30)
        return result.stdout

    def running(self) -> set[str]:
        return {line.split()[0] for line in self.ctl("status").splitlines() if "RUNNING" in line}

    def wait_running(self) -> None:
        wait_until(lambda: self.running() >= {"sender", "listener", "metrics"}, 60, "the programs running")
        wait_until(lambda: "probe_build_info" in requests.get(f"{self.url}/metrics", timeout=2).text, 30, "metrics")

    def pids(self) -> set[int]:
        """supervisord's pid and every program's."""
        return {int(p) for p in (self.ctl("pid") + " " + self.ctl("pid", "all")).split() if p.isdigit()}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def launch(emulator: EmulatorClient, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start a stack (and, unless told not to, wait until it runs); every one is stopped afterwards."""
    made: list[Running] = []

    def make(tag: str, wait: bool = True) -> Running:
        stack = Running(emulator, tmp_path, tag)
        made.append(stack)
        if wait:
            stack.wait_running()
        return stack

    yield make
    for stack in made:
        stack.proc.stop(signal.SIGTERM, timeout=60)


def test_a_second_stack_on_the_same_store_is_refused_and_the_first_keeps_running(
    launch: Callable[..., Running],
) -> None:
    first = launch("first")
    # Once the stack runs, `probe run` is the small watcher: the same pid, none of the heavy modules.
    watcher = first.proc.popen.pid
    assert "probe_stack/runtime/watch.py" in Path(f"/proc/{watcher}/cmdline").read_text()
    maps = Path(f"/proc/{watcher}/maps").read_text()
    assert "_sqlite3" not in maps and "_yaml" not in maps
    second = launch("second", wait=False)  # same store, its own port and run directory
    assert second.proc.popen.wait(30) == ExitStatus.BUSY
    out = second.proc.output().strip().splitlines()
    assert len(out) == 1 and f"pid {first.proc.popen.pid}" in out[0], out
    assert "probe_build_info" in requests.get(f"{first.url}/metrics", timeout=5).text
    assert first.running() == {"sender", "listener", "metrics", "lifecycle"}

    # SIGHUP (a closed terminal) stops the stack cleanly, like SIGTERM.
    pids = first.pids()
    first.proc.popen.send_signal(signal.SIGHUP)
    assert first.proc.popen.wait(60) == ExitStatus.OK
    wait_until(lambda: not any(alive(p) for p in pids), 10, "every process of the stack gone")


def test_modules_in_the_working_directory_never_stand_in_for_the_probes(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    """supervisord and its programs start in the operator's working directory; were it on their
    import path, a stray `shared/` or `supervisor/` there would replace the probe's own code."""
    work, planted = tmp_path / "work", tmp_path / "planted"
    for package in ("shared", "supervisor", "probe_sender", "probe_listener", "probe_stack"):
        (work / package).mkdir(parents=True)
        (work / package / "__init__.py").write_text(
            f"open({str(planted)!r}, 'a').write({package!r} + '\\n')\nraise SystemExit(9)\n"
        )
    stack = Running(emulator, tmp_path, "planted", cwd=work)
    try:
        stack.wait_running()
        assert stack.running() == {"sender", "listener", "metrics", "lifecycle"}
    finally:
        stack.proc.stop(signal.SIGTERM, timeout=60)
    assert not planted.exists(), planted.read_text()


def test_kill_9_of_probe_run_leaves_no_orphans_and_the_next_start_runs(
    launch: Callable[..., Running],
) -> None:
    first = launch("first")
    pids = first.pids()
    assert len(pids) == 5  # supervisord, lifecycle, metrics, listener, sender
    first.proc.popen.send_signal(signal.SIGKILL)
    first.proc.popen.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), 30, "supervisord and every program gone with probe run")
    launch("again")


def test_kill_9_of_supervisord_stops_its_programs_and_fails_the_stack(
    launch: Callable[..., Running],
) -> None:
    stack = launch("one")
    supervisord = int(stack.ctl("pid").strip())
    programs = {int(p) for p in stack.ctl("pid", "all").split()}
    os.kill(supervisord, signal.SIGKILL)
    assert stack.proc.popen.wait(30) == ExitStatus.FATAL
    wait_until(lambda: not any(alive(p) for p in programs), 30, "every program gone with supervisord")


def test_the_demo_emulator_gets_no_secret_on_its_command_line_and_output_to_a_file_stays_whole(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = "a-client-secret-4711"
    env = base_env(
        tmp_path,
        KEYCLOAK_SERVER=f"{base}/auth",
        COLLECTOR_URL=f"{base}/event-collector/event/{{dataset_id}}/{{version}}",
        WEBSOCKET_URL=f"ws://127.0.0.1:{port}/event-data-subscription",
        ORIGO_CLIENT_SECRET=secret,
        PROBE_DB_PATH=str(tmp_path / "probe.sqlite3"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        PROBE_RUN_DIR=tempfile.mkdtemp(prefix="pe-"),
        METRICS_PORT=str(free_port()),
        METRICS_HOST="127.0.0.1",
        EVENT_INTERVAL_SECONDS="0.2",
        STARTUP_WAIT_SECONDS="5",
    )
    out = tmp_path / "out.txt"
    with open(out, "w") as plain_file:  # not opened for appending, as `probe run > out.txt` is
        popen = subprocess.Popen(
            probe_cmd("run", "--with-emulator"), env=env, stdout=plain_file, stderr=subprocess.STDOUT
        )
    proc = Proc(popen, out)
    try:

        def emulator_pid() -> int | None:
            for child in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (child / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"emulator" in cmdline and str(port).encode() in cmdline:
                    return int(child.name)
            return None

        pid = wait_until(emulator_pid, 30, "the demo emulator")
        assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        wait_until(
            lambda: (
                "received seqno" in out.read_text()
                or "posted" in out.read_text()
                or "listener is subscribed" in out.read_text()
            ),
            30,
            "the stack at work",
        )

        def ctl_without_arguments() -> str:
            return subprocess.run(probe_cmd("ctl"), env=env, capture_output=True, text=True, timeout=30).stdout

        # no arguments: the status, not an interactive shell (stdin is not even open here)
        wait_until(lambda: re.search(r"^sender\s+RUNNING", ctl_without_arguments(), flags=re.M), 30, "status")
    finally:
        assert proc.stop(signal.SIGTERM, timeout=60) == ExitStatus.OK
    text = out.read_text()
    # Our banner and the programs' lines all survive: none overwrote another (O_APPEND on the file).
    assert "\x00" not in text and text.count("probe: stack starting") == 1 and "  stop     Ctrl-C\n" in text
    assert "sender: stopped" in text and "listener: stopped" in text


def test_probe_version() -> None:
    result = subprocess.run(probe_cmd("--version"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.split() == ["probe", metadata.version("dataplatform-probe")]


def test_no_process_of_the_stack_can_dump_core(launch: Callable[..., Running]) -> None:
    """A core of the sender held the client secret, the webhook token and the JWT (issue 22.12):
    the runner (now its watcher), supervisord and every program run with RLIMIT_CORE 0, hard too."""
    stack = launch("cores")
    pids = stack.pids() | {stack.proc.popen.pid}
    assert len(pids) >= 4
    for pid in pids:
        limits = Path(f"/proc/{pid}/limits").read_text()
        (core,) = [line.split()[4:6] for line in limits.splitlines() if line.startswith("Max core file size")]
        assert core == ["0", "0"], (pid, Path(f"/proc/{pid}/cmdline").read_bytes())

"""The read-only commands (`probe status`, `probe ctl`, `probe health`) from an operator's second
terminal: another directory, none of the stack's variables and no secret, only the command the
banner of `probe run` printed; and what `probe ctl` says when it cannot do what is asked."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import config as config_mod
from shared.exits import ExitStatus
from shared.store import Store
from tests.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    PYTHON,
    ROOT,
    WEBHOOK_TOKEN,
    EmulatorClient,
    Proc,
    free_port,
    probe_cmd,
    start,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

SECRET_NAMES = ("ORIGO_CLIENT_SECRET", "ORIGO_CLIENT_SECRET_FILE", "WEBHOOK_TOKEN", "WEBHOOK_TOKEN_FILE")


def bare_env(**extra: str) -> dict[str, str]:
    """A second terminal's environment: none of the probe's settings, no secret."""
    names = {f.env for f in config_mod.FIELDS} | {f.file_env for f in config_mod.FIELDS}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith(("PROBE_", "ORIGO_"))}
    return {**env, **extra}


def demo_shape(emulator: EmulatorClient, tmp: Path) -> dict[str, str]:
    """`make run`: a profile file with everything in it (paths relative to it), PROBE_CONFIG naming it."""
    profile = tmp / "profile" / "demo.yaml"
    profile.parent.mkdir()
    profile.write_text(
        "environment: local\n"
        f"auth:\n  keycloak_server: {emulator.base}/auth\n"
        f"collector:\n  url: {emulator.base}/event-collector/event/{{dataset_id}}/{{version}}\n"
        f"websocket:\n  url: ws://127.0.0.1:{emulator.port}/event-data-subscription\n"
        "store:\n  path: ../var/demo/probe.sqlite3\n"
        f"metrics:\n  multiproc_dir: ../var/demo/metrics\n  host: 127.0.0.1\n  port: {free_port()}\n"
    )
    return bare_env(PROBE_CONFIG=str(profile), PYTHONUNBUFFERED="1")


def script_shape(emulator: EmulatorClient, tmp: Path) -> dict[str, str]:
    """`make run-script`: the real platform's profile (dev, probe.yaml) with every setting, secrets
    included, from the environment (probe.env), here pointed at the emulator."""
    return bare_env(
        PROBE_CONFIG=str(ROOT / "probe.yaml"),
        ORIGO_ENVIRONMENT="dev",
        ORIGO_CLIENT_ID=CLIENT_ID,
        ORIGO_CLIENT_SECRET=CLIENT_SECRET,
        WEBHOOK_TOKEN=WEBHOOK_TOKEN,
        KEYCLOAK_SERVER=f"{emulator.base}/auth",
        COLLECTOR_URL=f"{emulator.base}/event-collector/event/{{dataset_id}}/{{version}}",
        WEBSOCKET_URL=f"ws://127.0.0.1:{emulator.port}/event-data-subscription",
        PROBE_DB_PATH=str(tmp / "data" / "probe.sqlite3"),
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "data" / "metrics"),
        METRICS_HOST="127.0.0.1",
        METRICS_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop(signal.SIGTERM, timeout=60)


def second_terminal(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the banner's command as typed in another terminal (its VAR=value words and all)."""
    words = shlex.split(command)
    settings = dict(word.split("=", 1) for word in words if re.match(r"^[A-Z_]+=", word))
    program = [word for word in words if not re.match(r"^[A-Z_]+=", word)]
    assert not set(settings) & set(SECRET_NAMES), command
    env = bare_env(**settings)
    return subprocess.run([*program, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shape", [demo_shape, script_shape], ids=["make-run", "make-run-script"])
def test_the_banner_command_works_in_another_terminal_without_secrets(
    emulator: EmulatorClient, tmp_path: Path, stacks: list[Proc], shape
) -> None:
    env = shape(emulator, tmp_path)
    log = tmp_path / "stack.log"
    stacks.append(start(probe_cmd("run"), log, env=env))
    status_line = wait_until(
        lambda: re.search(r"^  status\s+(.+) status$", log.read_text(), flags=re.M), 60, "the banner's status line"
    )
    command = status_line.group(1)
    probe = str(Path(PYTHON).parent / "probe")
    assert probe in command  # the real path of the executable, not a bare `probe` that is not on PATH
    assert f"PROBE_CONFIG={env['PROBE_CONFIG']}" in command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def status_works() -> subprocess.CompletedProcess | None:
        result = second_terminal(command, "status", cwd=elsewhere)
        ok = result.returncode == 0 and re.search(r"^counters probe-dataset: posted=[1-9]", result.stdout, re.M)
        return result if ok else None

    # The store's totals and the stack's counters, each saying since when it counts.
    result = wait_until(status_works, 60, "probe status from another terminal, the stack's counters in it")
    assert "totals: events in the store, since it began" in result.stdout
    assert "counters: the running stack's counters (/metrics), since this stack started" in result.stdout
    ctl = second_terminal(command, "ctl", "status", cwd=elsewhere)
    running = re.search(r"^sender\s+(STARTING|RUNNING)", ctl.stdout, flags=re.M)
    assert ctl.returncode == 0 and running, ctl.stdout + ctl.stderr
    health = wait_until(
        lambda: (r := second_terminal(command, "health", cwd=elsewhere)).returncode == 0 and r, 30, "probe health"
    )
    assert "/healthz" in health.stdout

    # `ctl tail` cannot work (every program logs to probe run's standard output): one line says why.
    tail = second_terminal(command, "ctl", "tail", "sender", cwd=elsewhere)
    assert tail.returncode == ExitStatus.CONFIG
    assert len(tail.stderr.strip().splitlines()) == 1 and "standard output of `probe run`" in tail.stderr


def test_ctl_without_a_stack_says_so_with_its_own_exit_status(tmp_path: Path) -> None:
    store = tmp_path / "probe.sqlite3"
    env = bare_env(PROBE_CONFIG=str(ROOT / "probe.yaml"), PROBE_DB_PATH=str(store), PROBE_RUN_DIR=str(tmp_path / "run"))
    result = subprocess.run(probe_cmd("ctl", "status"), env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == ExitStatus.NO_STACK == 6
    assert result.stderr.strip() == (
        f"probe ctl: no stack runs for store {store} (nothing answers on {tmp_path / 'run'}/supervisor.sock; "
        f"read {ROOT / 'probe.yaml'}: is that the stack's? Its banner prints the command, PROBE_CONFIG and all)"
    )
    # A control file left by a killed stack is no stack either.
    (tmp_path / "run").mkdir(mode=0o700)
    (tmp_path / "run" / "supervisorctl.conf").write_text("[supervisorctl]\n")
    result = subprocess.run(probe_cmd("ctl", "status"), env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == ExitStatus.NO_STACK and "no stack runs for store" in result.stderr


def test_a_reader_that_finds_nothing_says_which_configuration_it_read(tmp_path: Path) -> None:
    """An operator who forgot the stack's PROBE_CONFIG (the demo's, say) reads the defaults' store:
    the line says which configuration that was, and where the right command is, not "has it run?"."""
    env = bare_env()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = subprocess.run(probe_cmd("status"), env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert status.returncode == ExitStatus.STORE
    (line,) = status.stderr.strip().splitlines()
    assert f"no store at {elsewhere / 'var' / 'probe.sqlite3'} yet" in line
    assert "read no configuration file (defaults and environment)" in line and "banner" in line
    ctl = subprocess.run(probe_cmd("ctl", "status"), env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60)
    assert ctl.returncode == ExitStatus.NO_STACK and "read no configuration file" in ctl.stderr


def test_status_needs_no_secret(tmp_path: Path) -> None:
    store = tmp_path / "probe.sqlite3"
    Store(store).close()
    env = bare_env(
        PROBE_CONFIG=str(ROOT / "probe.yaml"),
        ORIGO_ENVIRONMENT="dev",
        PROBE_DB_PATH=str(store),
        METRICS_PORT=str(free_port()),  # not the default: a demo may run beside the suite
    )
    result = subprocess.run(probe_cmd("status"), env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "config error" not in result.stderr
    # The commands that post still want their secrets, and say which.
    check = subprocess.run(probe_cmd("check"), env=env, cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == ExitStatus.CONFIG and "ORIGO_CLIENT_SECRET" in check.stderr


def test_make_run_app_refuses_the_demo_profile_in_one_line() -> None:
    env = bare_env(PROBE_CONFIG="deploy/demo.yaml")
    result = subprocess.run(["make", "-s", "run-app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "is the demo's profile" in result.stderr and "make run" in result.stderr
    assert "stack starting" not in result.stdout


def test_reading_loads_no_secret_and_requires_none(tmp_path: Path) -> None:
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "dev",
        "WEBHOOK_TOKEN_FILE": str(tmp_path / "not-readable-here"),
        "ORIGO_CLIENT_SECRET": "s3cret-value",
    }
    cfg = config_mod.load(env, for_reading=True)
    assert cfg.client_secret in ("", None) and not cfg.secrets()  # nothing secret was even read
    with pytest.raises(config_mod.ConfigError, match="WEBHOOK_TOKEN_FILE"):
        config_mod.load(env)  # a command that posts still reads (and checks) every secret

"""`probe run --with-emulator` on a machine where the demo's port is taken: every URL of the stack
must name the emulator's one port, or the run is refused in one line naming what to set."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from probe_stack.runtime.run import emulator_port
from shared import config
from shared.exits import ExitStatus
from tests.helpers import PYTHON, ROOT, free_port, probe_cmd

DEMO = str(ROOT / "deploy" / "demo.yaml")


def moved(port: int) -> dict[str, str]:
    base = f"127.0.0.1:{port}"
    return {
        "KEYCLOAK_SERVER": f"http://{base}/auth",
        "COLLECTOR_URL": f"http://{base}/event-collector/event/{{dataset_id}}/{{version}}",
        "WEBSOCKET_URL": f"ws://{base}/event-data-subscription",
    }


def test_the_emulator_port_counts_every_url_not_only_the_subscriptions(tmp_path: Path) -> None:
    demo = config.load({"PROBE_CONFIG": DEMO})
    assert emulator_port(demo) == 8081
    # The demo's second dataset names its collector (the list endpoint) with the port written in:
    # moving the other URLs leaves it posting to whatever listens on 8081.
    problem = emulator_port(config.load({"PROBE_CONFIG": DEMO, **moved(8091)}))
    assert isinstance(problem, str)
    assert "8081: COLLECTOR_URL of probe-orders" in problem and "KEYCLOAK_SERVER" in problem
    one = tmp_path / "one.yaml"
    one.write_text("environment: local\ndatasets:\n  - id: a\n  - id: b\n")
    assert emulator_port(config.load({"PROBE_CONFIG": str(one), **moved(8091)})) == 8091


def test_a_demo_with_urls_on_two_ports_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "LOG_FORMAT"},
        "PROBE_CONFIG": DEMO,
        "PROBE_DB_PATH": str(tmp_path / "probe.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PROBE_RUN_DIR": str(tmp_path / "run"),
        "METRICS_PORT": str(free_port()),
        **moved(free_port()),
    }
    result = subprocess.run(
        probe_cmd("run", "--with-emulator"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == ExitStatus.CONFIG
    line = result.stderr.strip().splitlines()[-1]  # after the warning that probe-orders gets no token
    assert line.startswith("probe run --with-emulator: the emulator serves one port") and "probe-orders" in line
    assert not (tmp_path / "probe.sqlite3").exists()


def test_the_banner_gives_the_status_page_beside_the_metrics() -> None:
    """The page is what an operator opens first; the banner names its address, as text and in JSON."""
    from probe_stack.runtime.banner import stack_banner

    cfg = config.load({"PROBE_CONFIG": DEMO, "METRICS_PORT": "9123"})
    lines, fields = stack_banner(cfg, 4242)
    assert "  page     http://127.0.0.1:9123/status  (the status page, for a browser)" in lines
    assert fields["status_page_url"] == "http://127.0.0.1:9123/status"
    assert fields["metrics_url"] == "http://127.0.0.1:9123/metrics" and lines[0].endswith("(supervisord pid 4242)")


def test_without_the_console_script_the_banner_names_a_command_that_runs(tmp_path: Path) -> None:
    """Where no `probe` script sits beside the interpreter, another terminal is told `python -m
    probe_stack`: the application's own entry, which must run from any directory."""
    from probe_stack.runtime.banner import reader_command

    cfg = config.load({"PROBE_CONFIG": DEMO})
    command = reader_command(cfg, {}, str(tmp_path / "bin" / "python"))
    assert command.endswith(f"{tmp_path / 'bin' / 'python'} -m probe_stack"), command
    result = subprocess.run(
        [PYTHON, "-P", "-m", "probe_stack", "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("probe "), result


def test_the_banner_command_judges_the_datasets_the_stack_runs_when_they_came_from_the_environment() -> None:
    """`make run-script` takes the dataset from probe.env: the reader the banner names must judge that
    dataset, not the file's, and still carry no secret."""
    from probe_stack.runtime.banner import reader_command

    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "DATASET_ID": "my-ds",
        "DATASET_VERSION": "7",
        "ORIGO_CLIENT_SECRET": "s3cret",
    }
    cfg = config.load(env)
    command = reader_command(cfg, {}, str(PYTHON))
    assert "s3cret" not in command
    words = dict(w.split("=", 1) for w in shlex.split(command) if "=" in w)
    reader = config.load(words, for_reading=True)
    assert [(d.id, d.version) for d in reader.datasets] == [("my-ds", "7")]

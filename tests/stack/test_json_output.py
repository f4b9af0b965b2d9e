"""LOG_FORMAT=json: every line `probe run` writes is a JSON object, supervisord's own included, and
what a log pipeline filters on (app_id, counts) is a field, not only words inside `msg`."""

from __future__ import annotations

import json
import signal
import tempfile
from pathlib import Path

import pytest

from shared.jsonline import as_json_line
from tests.e2e.harness import stack_env
from tests.helpers import EmulatorClient, free_port, probe_cmd, start, wait_until

pytestmark = pytest.mark.timeout(180)


def test_lines_become_json_and_json_lines_stay_as_they_are() -> None:
    crit = json.loads(as_json_line("2026-11-30 14:08:35,931 CRIT Supervisor is running as root.  Privileges...\n"))
    assert crit["level"] == "CRITICAL" and crit["logger"] == "supervisord"
    assert crit["msg"] == "Supervisor is running as root.  Privileges..."
    assert json.loads(as_json_line("2026-11-30 14:08:36,937 INFO spawned: 'sender' with pid 9\n"))["level"] == "INFO"
    ours = '{"ts": "x", "level": "INFO", "logger": "sender", "msg": "m", "app_id": "ab"}'
    assert as_json_line(ours + "\n") == ours
    for text in ("Traceback (most recent call last):", '{"not": json', "[1, 2]", ""):
        doc = json.loads(as_json_line(text + "\n"))
        assert doc["msg"] == text and doc["logger"] == "output"


def test_every_line_of_probe_run_in_json_mode_is_json(emulator: EmulatorClient, tmp_path: Path) -> None:
    run_dir = tempfile.mkdtemp(prefix="pj-")
    env = stack_env(emulator, tmp_path, run_dir, free_port(), 3.0, LOG_FORMAT="json")
    log = tmp_path / "stack.log"  # stdout and stderr together, as a container runtime collects them
    proc = start(probe_cmd("run"), log, env=env)
    try:

        def lines() -> list[dict]:
            return [json.loads(line) for line in log.read_text().splitlines()]

        wait_until(lambda: any(d["logger"] == "supervisord" for d in lines()), 60, "supervisord's lines, as JSON")
        wait_until(lambda: any(d.get("app_id") for d in lines() if d["logger"] == "sender"), 60, "the sender's app_id")
        wait_until(lambda: any(d.get("app_id") for d in lines() if d["logger"] == "listener"), 60, "the listener's")
    finally:
        proc.stop(signal.SIGTERM, timeout=60)
    text = log.read_text()
    bad = [line for line in text.splitlines() if not line.startswith("{") or not isinstance(json.loads(line), dict)]
    assert not bad, bad
    docs = [json.loads(line) for line in text.splitlines()]
    assert any("running as root" in d["msg"] or "supervisord started" in d["msg"] for d in docs)
    assert any(d["msg"].startswith("stopped: sender") for d in docs)  # supervisord's lines up to the end

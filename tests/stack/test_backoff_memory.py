"""The sender's restart backoff holds within one stack, never into a fresh `probe run`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from probe_stack.runtime import preflight
from shared import config as config_mod
from shared.exits import ExitStatus
from shared.store import Store
from tests.helpers import ROOT


def test_a_fresh_run_forgets_the_previous_runs_fail_outs_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "probe.sqlite3"
    with Store(db) as store:
        store.record_fail_out(time.time() - 60)
        store.record_fail_out(time.time())  # two in a row: the next start of the sender would wait 20 s
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "PROBE_DB_PATH": str(db),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    assert preflight.prepare(config_mod.load(env)) == ExitStatus.OK
    with Store(db) as store:
        assert store.fail_outs() == (0, 0.0)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "probe: the previous run's sender failed out 2 time(s) in a row; its restart backoff does not carry over: "
        "sending starts at once"
    )


def test_a_run_without_fail_outs_says_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "PROBE_DB_PATH": str(tmp_path / "probe.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    assert preflight.prepare(config_mod.load(env)) == ExitStatus.OK
    assert capsys.readouterr().err == ""

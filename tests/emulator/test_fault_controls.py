"""The emulator's controls refuse what would silently do nothing: faults for a dataset that does
not exist, fault settings that are misspelt, a port it cannot have."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from probe_stack.runtime.run import emulator_faults_problem
from shared.exits import ExitStatus
from testkit.emulator import EmulatorClient
from testkit.probe import probe_cmd
from testkit.process import PYTHON, ROOT

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_faults_of_an_unknown_dataset_are_404_naming_the_datasets(emulator: EmulatorClient, method: str) -> None:
    before = emulator.session.get(f"{emulator.base}/_emulator/faults", timeout=5).json()
    answer = emulator.session.request(
        method, f"{emulator.base}/_emulator/faults", params={"dataset": "nope"}, json={"paused": True}, timeout=5
    )
    assert answer.status_code == 404
    assert answer.json() == {"error": "no dataset 'nope'; the datasets are: probe-dataset"}
    assert emulator.session.get(f"{emulator.base}/_emulator/faults", timeout=5).json() == before  # nothing changed
    known = emulator.session.put(
        f"{emulator.base}/_emulator/faults", params={"dataset": "probe-dataset"}, json={"drop_rate": 0.5}, timeout=5
    )
    assert known.status_code == 200 and known.json()["drop_rate"] == 0.5


def test_a_misspelt_fault_setting_gets_a_did_you_mean(emulator: EmulatorClient) -> None:
    answer = requests.put(f"{emulator.base}/_emulator/faults", json={"drop_rat": 0.5}, timeout=5)
    assert answer.status_code == 400 and "did you mean 'drop_rate'?" in answer.json()["error"]


def test_bad_emulator_faults_are_refused_before_anything_starts() -> None:
    assert emulator_faults_problem('{"drop_rate": 0.1}') is None
    assert "did you mean 'paused'?" in (emulator_faults_problem('{"pasued": true}') or "")
    assert "not JSON" in (emulator_faults_problem("{drop_rate: 1}") or "")
    assert "JSON object" in (emulator_faults_problem("[1]") or "")


def test_probe_run_with_bad_emulator_faults_exits_2_in_one_line(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "ORIGO_"))},
        "PROBE_CONFIG": str(ROOT / "deploy/demo.yaml"),
        "PROBE_DB_PATH": str(tmp_path / "probe.sqlite3"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PROBE_RUN_DIR": str(tmp_path / "run"),
        "EMULATOR_FAULTS": '{"drop_rat": 0.3}',
    }
    result = subprocess.run(
        probe_cmd("run", "--with-emulator"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == ExitStatus.CONFIG
    assert result.stderr.strip().splitlines() == [
        "probe run --with-emulator: EMULATOR_FAULTS: unknown fault setting 'drop_rat'; did you mean 'drop_rate'? "
        "known: " + result.stderr.split("known: ", 1)[1].strip()
    ]
    assert not (tmp_path / "metrics").exists()  # refused before anything was touched


def test_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [PYTHON, "-m", "emulator", "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"probe emulator: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "stop what listens there, or choose another --port"
    ]


def test_refuse_subscriber_refuses_one_location_and_closes_its_subscription(emulator: EmulatorClient) -> None:
    import websocket

    from shared.contract import LOCAL_WEBHOOK_TOKEN
    from tests.helpers import DATASET

    def subscribe(tag: str) -> websocket.WebSocket:
        url = f"ws://127.0.0.1:{emulator.port}/event-data-subscription?subscriber={tag}"
        return websocket.create_connection(f"{url}&dataset_id={DATASET}&webhook_token={LOCAL_WEBHOOK_TOKEN}", timeout=5)

    zone_a, zone_b = subscribe("zone-a"), subscribe("zone-b")
    emulator.faults(refuse_subscriber="zone-b")
    opcode, data = zone_b.recv_data(control_frame=True)  # closed by the emulator
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(data[:2], "big") == 1011
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        subscribe("zone-b")
    assert info.value.status_code == 500
    assert zone_a.connected and subscribe("zone-a").connected  # another location is untouched
    emulator.faults(refuse_subscriber="")
    assert subscribe("zone-b").connected
    zone_a.close()

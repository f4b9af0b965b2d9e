"""The tests' names for the test kit (`testkit`), with the demo identity and dataset the tests assume."""

from __future__ import annotations

from shared.contract import LOCAL_CLIENT_ID as CLIENT_ID
from shared.contract import LOCAL_CLIENT_SECRET as CLIENT_SECRET
from shared.contract import LOCAL_WEBHOOK_TOKEN as WEBHOOK_TOKEN
from testkit.emulator import EmulatorClient, serve_emulator, start_emulator
from testkit.probe import (
    metric,
    open_store,
    probe_cmd,
    read_events,
    read_metrics,
    start_probe,
    store_app_id,
    store_in_flight,
)
from testkit.process import PYTHON, ROOT, Proc, free_port, start, wait_until
from testkit.truth import implied_state

DATASET = "probe-dataset"

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "DATASET",
    "PYTHON",
    "ROOT",
    "WEBHOOK_TOKEN",
    "EmulatorClient",
    "Proc",
    "free_port",
    "implied_state",
    "metric",
    "open_store",
    "probe_cmd",
    "read_events",
    "read_metrics",
    "serve_emulator",
    "start",
    "start_emulator",
    "start_probe",
    "store_app_id",
    "store_in_flight",
    "wait_until",
]

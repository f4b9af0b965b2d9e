"""A metric's HELP, which an operator reads in /metrics, names every reason the code counts it by.

The HELP texts listed reasons by hand and drifted from the enums behind them (a `store` skip, the
connect failures' dns/refused/tls/..., a `too_large` disconnect were missing).
"""

from __future__ import annotations

from enum import StrEnum

import pytest
from prometheus_client import Counter

from probe_listener.subscription import ConnectFailure, DisconnectReason
from probe_sender.schedule import SkipReason
from shared import metrics
from shared.auth import TokenFailure

LISTED = [
    (metrics.skipped_slots, SkipReason),
    (metrics.ws_connect_failures, ConnectFailure),
    (metrics.ws_disconnects, DisconnectReason),
    (metrics.token_request_errors, TokenFailure),
]


@pytest.mark.parametrize(("metric", "reasons"), LISTED, ids=[m._name for m, _ in LISTED])
def test_a_help_that_lists_reasons_lists_every_one(metric: Counter, reasons: type[StrEnum]) -> None:
    missing = [r.value for r in reasons if r.value not in metric._documentation]
    assert not missing, f"{metric._name}: its HELP leaves out {missing}"

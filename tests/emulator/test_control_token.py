"""The emulator's controls with a control token: a local stranger can neither change faults nor inject frames."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from emulator.options import CONTROL_TOKEN_ENV
from testkit.emulator import start_emulator


def test_with_a_control_token_the_controls_need_it_and_the_platform_side_does_not(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path, env={**os.environ, CONTROL_TOKEN_ENV: "ctl-token-4711"})
    base = emulator.base
    try:
        stranger = [
            ("put", "/_emulator/faults", {"json": {"drop_rate": 1.0}}),
            ("post", "/_emulator/inject", {"json": {"text": "forged"}}),
            ("post", "/_emulator/close", {"json": {}}),
            ("post", "/_emulator/reset", {}),
            ("post", "/_emulator/revoke-tokens", {}),
            ("get", "/_emulator/truth", {}),
            ("get", "/_emulator/faults", {}),
        ]
        for method, path, kw in stranger:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "ctl-token-4711"}):
                r = requests.request(method, base + path, headers=headers, timeout=5, **kw)
                assert r.status_code == 401, (method, path, headers, r.status_code)
        own = {"Authorization": "Bearer ctl-token-4711"}
        assert requests.get(f"{base}/_emulator/faults", headers=own, timeout=5).json()["drop_rate"] == 0
        r = requests.put(f"{base}/_emulator/faults", json={"drop_rate": 0.5}, headers=own, timeout=5)
        assert r.status_code == 200 and r.json()["drop_rate"] == 0.5
        assert requests.post(f"{base}/_emulator/inject", json={"text": "x"}, headers=own, timeout=5).status_code == 200
        # The platform's own endpoints are the probe's, not the controls': no control token there.
        token = requests.post(
            f"{base}/auth/realms/api-catalog/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": "wrong", "client_secret": "wrong"},
            timeout=5,
        )
        assert token.status_code == 401 and "unauthorized_client" in token.text  # its own answer, not ours
    finally:
        emulator.proc.stop()
    assert "ctl-token-4711" not in emulator.proc.output()


def test_without_a_control_token_the_demo_controls_stay_open(tmp_path: Path) -> None:
    emulator = start_emulator(tmp_path, env={k: v for k, v in os.environ.items() if k != CONTROL_TOKEN_ENV})
    try:
        assert requests.put(f"{emulator.base}/_emulator/faults", json={"drop_rate": 0.1}, timeout=5).status_code == 200
    finally:
        emulator.proc.stop()

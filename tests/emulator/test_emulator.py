"""The emulator answers the platform contract, injects faults, and tells the truth.

Real clients only: python-keycloak for tokens, requests for the collector,
websocket-client for the subscription.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import statistics
import time
from pathlib import Path

import pytest
import requests
import websocket
from jwcrypto import jwk, jwt
from keycloak import KeycloakOpenID
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakError

from shared.contract import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, LOCAL_WEBHOOK_TOKEN
from testkit.emulator import EmulatorClient
from testkit.probe import probe_cmd
from testkit.process import free_port, start, wait_until
from tests.helpers import DATASET

pytestmark = pytest.mark.timeout(120)


def keycloak(emu: EmulatorClient, secret: str = LOCAL_CLIENT_SECRET) -> KeycloakOpenID:
    return KeycloakOpenID(
        server_url=f"{emu.base}/auth/", realm_name="api-catalog", client_id=LOCAL_CLIENT_ID, client_secret_key=secret
    )


def token(emu: EmulatorClient) -> str:
    return keycloak(emu).token(grant_type="client_credentials")["access_token"]


def post(emu: EmulatorClient, body: object, bearer: str | None, dataset: str = DATASET, raw: str | None = None):
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    data = raw if raw is not None else json.dumps(body)
    return requests.post(f"{emu.base}/event-collector/event/{dataset}/1", data=data, headers=headers, timeout=10)


def subscribe(emu: EmulatorClient, token: str = LOCAL_WEBHOOK_TOKEN, dataset: str = DATASET) -> websocket.WebSocket:
    return websocket.create_connection(
        f"ws://127.0.0.1:{emu.port}/event-data-subscription?dataset_id={dataset}&webhook_token={token}", timeout=5
    )


def test_token_is_a_signed_jwt_that_opens_the_collector(emulator: EmulatorClient) -> None:
    answer = keycloak(emulator).token(grant_type="client_credentials")
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 300
    claims = json.loads(jwt.JWT(jwt=answer["access_token"]).token.objects["payload"])
    assert {"exp", "iat", "iss", "azp"} <= set(claims) and claims["azp"] == LOCAL_CLIENT_ID
    response = post(emulator, {"app_id": "abcdef01", "seqno": 1, "time_sent": "t"}, answer["access_token"])
    assert (response.status_code, response.json()) == (200, {"message": "Ok"})


def test_wrong_client_secret_raises_the_keycloak_authentication_error(emulator: EmulatorClient) -> None:
    with pytest.raises(KeycloakAuthenticationError):
        keycloak(emulator, secret="wrong").token(grant_type="client_credentials")


def test_expired_forged_and_missing_tokens_get_401(emulator: EmulatorClient) -> None:
    emulator.faults(token_lifetime_seconds=3)  # whole seconds: long enough to be used before it expires
    short = token(emulator)
    event = {"app_id": "abcdef01", "seqno": 1, "time_sent": "t"}
    assert post(emulator, event, short).status_code == 200
    wait_until(lambda: post(emulator, event, short).status_code == 401, 8, "the token to expire")
    good = token(emulator)
    header, payload, signature = good.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    other_key = jwk.JWK.generate(kty="RSA", size=2048)
    forged = jwt.JWT(header={"alg": "RS256"}, claims={"exp": time.time() + 300, "azp": LOCAL_CLIENT_ID})
    forged.make_signed_token(other_key)
    for bad in (tampered, forged.serialize(), "not-a-jwt", None):
        response = post(emulator, event, bad)
        assert (response.status_code, response.json()) == (401, {"message": "Unauthorized"}), bad
    assert post(emulator, event, good).status_code == 200


def test_collector_answers_in_the_contract_order(emulator: EmulatorClient) -> None:
    bearer = token(emulator)
    missing = post(emulator, {}, bearer, dataset="nope")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Dataset with id:nope and version:1 does not exist"}
    assert post(emulator, None, None, dataset="nope").status_code == 401  # auth is checked first
    not_json = post(emulator, None, bearer, raw="{not json")
    assert (not_json.status_code, not_json.json()["message"]) == (400, "Body is not a valid JSON document")
    wrong_shape = post(emulator, [1, 2], bearer)
    assert (wrong_shape.status_code, wrong_shape.json()["message"]) == (
        400,
        "JSON document does not conform to the given schema",
    )
    many = requests.post(
        f"{emulator.base}/event-collector/events/{DATASET}/1",
        json=[{"n": i} for i in range(3)],
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=10,
    )
    assert many.status_code == 200
    assert post(emulator, [{"n": i} for i in range(501)], bearer).status_code == 413
    assert len(emulator.truth()["events"]) == 3


def test_handshake_failures_carry_the_contract_status(emulator: EmulatorClient) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        subscribe(emulator, token="00000000-0000-4000-8000-00000000dead")
    assert info.value.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(f"ws://127.0.0.1:{emulator.port}/event-data-subscription", timeout=5)
    assert info.value.status_code == 400
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(
            f"ws://127.0.0.1:{emulator.port}/event-data-subscription?dataset_id={DATASET}",
            header=["Authorization: Bearer forged.token.here"],
            timeout=5,
        )
    assert info.value.status_code == 401
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{emulator.port}/event-data-subscription?dataset_id={DATASET}",
        header=[f"Authorization: Bearer {token(emulator)}"],
        timeout=5,
    )
    ws.close()


def test_events_arrive_as_python_json_dumps_with_newline_and_pings_are_answered(emulator: EmulatorClient) -> None:
    ws = subscribe(emulator)
    event = {"app_id": "abcdef01", "seqno": 1, "time_sent": "2026-01-01T00:00:00+00:00", "navn": "Ås"}
    assert post(emulator, event, token(emulator)).status_code == 200
    # Python's json.dumps: ", " and ": " separators, non-ASCII escaped, a trailing newline
    assert ws.recv() == (
        '{"app_id": "abcdef01", "seqno": 1, "time_sent": "2026-01-01T00:00:00+00:00", "navn": "\\u00c5s"}\n'
    )
    ws.ping(b"x")
    opcode, _frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_PONG
    ws.close()


def test_drop_rate_one_delivers_nothing_and_the_truth_says_dropped(emulator: EmulatorClient) -> None:
    ws = subscribe(emulator)
    bearer = token(emulator)
    emulator.faults(drop_rate=1.0)
    for seqno in range(1, 21):
        assert post(emulator, {"app_id": "a", "seqno": seqno, "time_sent": "t"}, bearer).ok
    emulator.faults(drop_rate=0.0)
    assert post(emulator, {"app_id": "a", "seqno": 99, "time_sent": "t"}, bearer).ok  # sentinel
    assert json.loads(ws.recv())["seqno"] == 99  # nothing of the 20 came before it
    events = emulator.truth()["events"]
    assert [e["fate"] for e in events[:20]] == ["dropped"] * 20
    assert all(not e["writes"] for e in events[:20])
    ws.close()


def test_a_fixed_delay_holds_every_event_that_long_and_not_much_longer(emulator: EmulatorClient) -> None:
    """Never early; late only by what a busy machine adds (a margin of half the delay, on the median)."""
    delay = 0.2
    ws = subscribe(emulator)
    bearer = token(emulator)
    emulator.faults(delay_ms=delay * 1000)
    gaps = []
    for seqno in range(1, 11):
        posted = time.time()
        assert post(emulator, {"app_id": "a", "seqno": seqno, "time_sent": "t"}, bearer).ok
        assert json.loads(ws.recv())["seqno"] == seqno
        gaps.append(time.time() - posted)
    assert min(gaps) >= delay - 0.002, gaps  # the client never sees an event before its delay
    truth = emulator.truth()["events"]
    held = [e["writes"][0]["at"] - e["accepted_at"] for e in truth]
    assert min(held) >= delay - 0.002, held  # (timer resolution)
    assert statistics.median(held) <= delay * 1.5, held
    ws.close()


def test_duplicates_are_exactly_what_the_truth_reports(emulator: EmulatorClient) -> None:
    ws = subscribe(emulator)
    ws.settimeout(5)
    bearer = token(emulator)
    emulator.faults(duplicate_rate=0.3, seed=7)
    for seqno in range(1, 101):
        assert post(emulator, {"app_id": "a", "seqno": seqno, "time_sent": "t"}, bearer).ok
    truth = emulator.truth()["events"]
    expected = sum(e["copies"] for e in truth)
    assert 100 < expected < 200
    wait_until(lambda: sum(len(e["writes"]) for e in emulator.truth()["events"]) == expected, 10, "all writes")
    received = [json.loads(ws.recv())["seqno"] for _ in range(expected)]
    assert len(received) - len(set(received)) == expected - 100
    copies = {e["seqno"]: e["copies"] for e in truth}
    assert all(received.count(s) == c for s, c in copies.items())
    ws.close()


def test_collector_error_injection_and_token_endpoint_down(emulator: EmulatorClient) -> None:
    bearer = token(emulator)
    emulator.faults(collector_error_rate=1.0, collector_error_statuses=[429, 502])
    statuses = {post(emulator, {"seqno": i}, bearer).status_code for i in range(20)}
    assert statuses == {429, 502}
    assert emulator.truth()["events"] == []
    emulator.faults(token_down=True)
    with pytest.raises(KeycloakError, match="503"):
        keycloak(emulator).token(grant_type="client_credentials")


def test_pause_holds_events_until_resume_and_half_open_drops_pongs(emulator: EmulatorClient) -> None:
    ws = subscribe(emulator)
    bearer = token(emulator)
    emulator.faults(paused=True)
    assert post(emulator, {"app_id": "a", "seqno": 1, "time_sent": "t"}, bearer).ok
    wait_until(lambda: emulator.truth()["events"][0]["fate"] == "held", 5, "the event to be held")
    emulator.faults(paused=False)
    assert json.loads(ws.recv())["seqno"] == 1
    emulator.faults(half_open=True)
    ws.settimeout(1.0)
    ws.ping(b"x")
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv_data_frame(True)
    ws.close()


def test_force_close_and_inject(emulator: EmulatorClient) -> None:
    ws = subscribe(emulator)
    wait_until(lambda: emulator.subscribers() == 1, 5, "the subscriber to register")
    assert emulator.inject(text="not json") == 1
    assert ws.recv() == "not json"
    assert emulator.inject(binary_b64=base64.b64encode(b"\x00\x01").decode()) == 1
    assert ws.recv() == b"\x00\x01"
    assert emulator.close_all(code=4000) == 1
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 4000
    subs = wait_until(lambda: [s for s in emulator.truth()["subscribers"] if s["closed_at"]], 5, "close recorded")
    assert subs[0]["close_code"] == 4000


def test_fault_settings_are_validated(emulator: EmulatorClient) -> None:
    for bad in ({"drop_rate": 2}, {"nonsense": 1}, {"delay_distribution": "pareto"}, {"paused": "yes"}):
        response = requests.put(f"{emulator.base}/_emulator/faults", json=bad, timeout=5)
        assert response.status_code == 400 and "error" in response.json()
    current = requests.get(f"{emulator.base}/_emulator/faults", timeout=5).json()
    assert current["drop_rate"] == 0.0 and current["delay_distribution"] == "fixed"


def test_close_every_seconds_closes_with_the_configured_code(emulator: EmulatorClient) -> None:
    ws = subscribe(emulator)
    emulator.faults(close_every_seconds=0.3, close_code=4001)
    ws.settimeout(3)
    opcode, frame = ws.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and int.from_bytes(frame.data[:2], "big") == 4001


def test_delay_distributions_are_seeded_and_shaped() -> None:
    from emulator.faults import Dice, Faults

    def sample(**settings: object) -> list[float]:
        faults, dice = Faults().updated(settings), Dice(42)
        return [dice.delay_ms(faults) for _ in range(4000)]

    uniform = sample(delay_distribution="uniform", delay_ms=100, delay_spread_ms=20)
    assert min(uniform) >= 80 and max(uniform) <= 120 and statistics.mean(uniform) == pytest.approx(100, abs=2)
    normal = sample(delay_distribution="normal", delay_ms=100, delay_spread_ms=10)
    assert statistics.stdev(normal) == pytest.approx(10, rel=0.1)
    lognormal = sample(delay_distribution="lognormal", delay_ms=50, delay_sigma=0.5)
    assert statistics.median(lognormal) == pytest.approx(50, rel=0.05) and max(lognormal) > 150
    assert sample(delay_distribution="normal", delay_ms=5, delay_spread_ms=50).count(0.0) > 1000  # never negative
    assert sample(delay_distribution="uniform", delay_ms=100, delay_spread_ms=20) == uniform  # the seed repeats


def test_the_emulator_process_stops_within_a_second_on_sigterm_while_it_holds_a_post(tmp_path: Path) -> None:
    """`probe emulator` as a process (the process is the point): a post it holds does not hold up its stop."""
    port = free_port()
    proc = start(probe_cmd("emulator", "--port", str(port), "--no-collector-auth"), tmp_path / "emulator.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(f"{base}/_emulator/health", timeout=1).ok, 30, "the emulator up")
        requests.put(f"{base}/_emulator/faults", json={"collector_delay_ms": 60_000}, timeout=5).raise_for_status()
        body = b'{"app_id": "a", "seqno": 1, "time_sent": "t"}'
        with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
            held.sendall(
                f"POST /event-collector/event/{DATASET}/1 HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            # Answered after the post's bytes were in: the one event loop has taken the post up.
            assert requests.get(f"{base}/_emulator/health", timeout=5).ok
            started = time.monotonic()
            assert proc.stop(timeout=10) == 0, proc.output()
            # About 0.1 s on a quiet machine; the margin is for a busy one, the hold is 60 s.
            assert time.monotonic() - started < 3.0, proc.output()
            held.settimeout(5)
            assert held.recv(100).startswith(b"HTTP/1.1 503"), "the held post got no answer"
    finally:
        proc.stop(signal.SIGKILL)

"""Events per second the emulator accepts and delivers to one subscriber on loopback: the ceiling
above which the bench measures the emulator, not the probe."""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import requests
import websocket

from bench.skeleton import DATASET_ID, Results, Scenario, emulator_only
from shared.config import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET
from shared.config import LOCAL_WEBHOOK_TOKEN as WEBHOOK_TOKEN
from testkit.emulator import EmulatorClient


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--emulator-seconds", type=float, default=10.0, help="emulator throughput run (0 skips)")


def run(args: argparse.Namespace, tmp: Path) -> Results:
    if args.emulator_seconds <= 0:
        return {}
    return {"emulator": run_emulator_throughput(args.emulator_seconds, tmp)}


def emulator_token(emulator: EmulatorClient) -> str:
    from keycloak import KeycloakOpenID

    return KeycloakOpenID(
        server_url=f"{emulator.base}/auth/",
        realm_name="api-catalog",
        client_id=LOCAL_CLIENT_ID,
        client_secret_key=LOCAL_CLIENT_SECRET,
    ).token(grant_type="client_credentials")["access_token"]


def _count(ws: websocket.WebSocket, received: dict[str, float]) -> None:
    """Read until the subscription goes quiet for 3 s, counting messages and the time of the last."""
    ws.settimeout(3)
    try:
        while True:
            ws.recv()
            received["n"] += 1
            received["last"] = time.monotonic()
    except (websocket.WebSocketException, OSError):
        return


def run_emulator_throughput(seconds: float, tmp: Path, batch: int = 100) -> dict:
    with emulator_only(tmp) as emulator:
        token = emulator_token(emulator)
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{emulator.port}/event-data-subscription?dataset_id={DATASET_ID}&webhook_token={WEBHOOK_TOKEN}"
        )
        received = {"n": 0, "last": 0.0}
        reader = threading.Thread(target=_count, args=(ws, received), daemon=True)
        reader.start()
        session = requests.Session()
        url = f"{emulator.base}/event-collector/events/{DATASET_ID}/1"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        sent, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            body = json.dumps([{"app_id": "bench", "seqno": sent + i, "time_sent": "t"} for i in range(batch)])
            session.post(url, data=body, headers=headers, timeout=10).raise_for_status()
            sent += batch
        posting = time.monotonic() - started
        reader.join(10)
        ws.close()
    return {
        "accepted_per_s": sent / posting,
        "delivered": received["n"],
        "sent": sent,
        "delivered_per_s": received["n"] / max(received["last"] - started, 1e-9),
        "batch": batch,
    }


def report(results: Results) -> list[str]:
    if "emulator" not in results:
        return []
    e = results["emulator"]
    return [
        f"Emulator: accepted {e['accepted_per_s']:.0f} ev/s, delivered {e['delivered']} of {e['sent']} "
        f"to one subscriber ({e['delivered_per_s']:.0f} ev/s), batches of {e['batch']}."
    ]


SCENARIO = Scenario("emulator", options, run, report)

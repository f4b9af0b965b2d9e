"""`probe check`: a one-shot end-to-end check against the emulator, touching no stack's files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from shared.exits import ExitStatus
from tests.helpers import ROOT, EmulatorClient, probe_cmd


def run_check(emulator: EmulatorClient, tmp: Path, *args: str, **env_overrides: str) -> subprocess.CompletedProcess:
    env = emulator.env(tmp, PROMETHEUS_MULTIPROC_DIR=str(tmp / "stack-metrics"), **env_overrides)
    return subprocess.run(probe_cmd("check", *args), env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)


def test_check_passes_against_a_healthy_pipeline_and_leaves_no_trace(emulator: EmulatorClient, tmp_path: Path) -> None:
    result = run_check(emulator, tmp_path)
    assert result.returncode == ExitStatus.OK, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["dataset", "seqno", "outcome", "latency"]
    rows = [line.split() for line in lines[1:-1]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("probe-dataset", str(i), "received") for i in (1, 2, 3)]
    assert lines[-1] == "probe check: all events arrived"
    # Its own app_id, store and metrics: nothing of a stack's is created or written.
    assert not (tmp_path / "probe.sqlite3").exists() and not (tmp_path / "stack-metrics").exists()
    truth = emulator.truth()["events"]
    assert len(truth) == 3 and len({e["app_id"] for e in truth}) == 1


def test_check_fails_naming_the_missing_events_when_the_pipeline_drops_everything(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    emulator.faults(drop_rate=1.0)
    result = run_check(emulator, tmp_path, "--timeout", "1.5", "--count", "2")
    assert result.returncode == ExitStatus.FATAL, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == ("probe check: 2 of 2 did not arrive: probe-dataset#1 probe-dataset#2")
    doc = json.loads(run_check(emulator, tmp_path, "--timeout", "1", "--count", "1", "--json").stdout)
    assert doc["ok"] is False and [e["outcome"] for e in doc["events"]] == ["missing"]


def test_check_says_why_a_post_failed(emulator: EmulatorClient, tmp_path: Path) -> None:
    result = run_check(
        emulator, tmp_path, "--count", "1", "--json", ORIGO_CLIENT_SECRET="wrong-secret", POST_TIMEOUT_SECONDS="1"
    )
    assert result.returncode == ExitStatus.FATAL
    (event,) = json.loads(result.stdout)["events"]
    assert event["outcome"] == "post_failed"
    # Keycloak refused the client: named as such (never `auth`, which is the collector's refusal),
    # with the host and the hint, in the words the sender's note gives /readyz.
    assert event["detail"].startswith(
        "token: posts to probe-dataset/1 fail for want of a token: Keycloak at 127.0.0.1:"
    )
    assert event["detail"].endswith(": rejected: check ORIGO_CLIENT_ID and the secret")
    assert "wrong-secret" not in result.stdout + result.stderr


def test_check_with_keycloak_not_listening_names_the_cause_and_host(emulator: EmulatorClient, tmp_path: Path) -> None:
    """Not `post_failed auth` for every event: the cause (refused) and the host it was."""
    from tests.helpers import free_port

    keycloak = f"127.0.0.1:{free_port()}"
    result = run_check(
        emulator,
        tmp_path,
        "--count",
        "1",
        "--json",
        KEYCLOAK_SERVER=f"http://{keycloak}/auth",
        POST_TIMEOUT_SECONDS="1",
    )
    assert result.returncode == ExitStatus.FATAL, result.stdout + result.stderr
    (event,) = json.loads(result.stdout)["events"]
    assert event["outcome"] == "post_failed"
    assert event["detail"] == (
        f"token: posts to probe-dataset/1 fail for want of a token: Keycloak at {keycloak}: refused: "
        "is Keycloak running at that address?"
    )


def test_check_gives_the_subscriptions_reason_with_its_host_as_readyz_does(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    """Issue 24: the reason the listener records (and /readyz shows), here nothing listening."""
    import socket

    with socket.socket() as bound:  # held bound and not listening: refused, and no one else's
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        result = run_check(
            emulator,
            tmp_path,
            "--count",
            "1",
            "--timeout",
            "1",
            "--json",
            WEBSOCKET_URL=f"ws://127.0.0.1:{port}/event-data-subscription",
        )
    assert result.returncode == ExitStatus.FATAL, result.stdout + result.stderr
    (event,) = json.loads(result.stdout)["events"]
    assert event["outcome"] == "not_subscribed"
    assert event["detail"].startswith(f"refused (127.0.0.1:{port}): "), event

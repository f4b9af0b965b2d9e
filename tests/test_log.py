"""The redaction filter removes secrets from messages, arguments and exception texts."""

from __future__ import annotations

import io
import json
import logging

import pytest

from shared import log as log_mod

SECRET = "client-Secret-4711"
TOKEN = "0a1b2c3d-1111-4222-8333-444455556666"


@pytest.fixture
def captured() -> io.StringIO:
    buffer = io.StringIO()
    log_mod.setup("test", secrets=[SECRET, TOKEN])
    handler = logging.getLogger().handlers[0]
    handler.setStream(buffer)
    return buffer


def test_known_secrets_and_secret_shapes_are_redacted(captured: io.StringIO) -> None:
    logger = logging.getLogger("t")
    logger.info("connecting to ws://h/x?dataset_id=d&webhook_token=%s", "anything-else-123")
    logger.info("secret %s and token %s", SECRET, TOKEN)
    logger.info("header Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl")
    logger.info('body {"access_token": "abc.def.ghi", "expires_in": 300}')
    try:
        raise ConnectionError(f"failed for ws://h/?webhook_token={TOKEN} with {SECRET}")
    except ConnectionError:
        logger.exception("reconnecting")
    text = captured.getvalue()
    for leaked in (SECRET, TOKEN, "anything-else-123", "eyJhbGciOi", "abc.def.ghi"):
        assert leaked not in text
    assert text.count("<redacted>") >= 6
    assert "ConnectionError" in text and "dataset_id=d" in text


def test_json_lines(captured: io.StringIO) -> None:
    log_mod.setup("test", fmt="json", secrets=[SECRET])
    buffer = io.StringIO()
    logging.getLogger().handlers[0].setStream(buffer)
    logging.getLogger("t").warning("posting failed seqno=%d secret=%s", 7, SECRET)
    doc = json.loads(buffer.getvalue())
    assert doc["level"] == "WARNING" and doc["msg"] == "posting failed seqno=7 secret=<redacted>"


def test_json_lines_carry_the_fields_as_keys(tmp_path) -> None:
    buffer = io.StringIO()
    log_mod.setup("test", fmt="json", secrets=[SECRET])
    logging.getLogger().handlers[0].setStream(buffer)
    logging.getLogger("sender").warning(
        "post failed seqno=%d reason=%s secret=%s",
        7,
        "http_5xx",
        SECRET,
        extra={"seqno": 7, "reason": "http_5xx", "status": 503, "latency": 0.25},
    )
    doc = json.loads(buffer.getvalue())
    assert (doc["seqno"], doc["reason"], doc["status"], doc["latency"]) == (7, "http_5xx", 503, 0.25)
    assert doc["level"] == "WARNING" and doc["logger"] == "sender" and SECRET not in buffer.getvalue()


def test_probe_run_speaks_json_with_log_format_json(tmp_path) -> None:
    import os
    import socket
    import subprocess

    from tests.helpers import ROOT, probe_cmd

    base = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local", "LOG_FORMAT": "json"}
    env = {**os.environ, **base, "EVENT_INTERVAL_SECONDS": "abc"}
    bad = subprocess.run(probe_cmd("run"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    doc = json.loads(bad.stderr)
    assert doc["level"] == "ERROR" and "EVENT_INTERVAL_SECONDS" in doc["msg"]
    with socket.create_server(("127.0.0.1", 0)) as busy:
        env = {
            **os.environ,
            **base,
            "METRICS_HOST": "127.0.0.1",
            "METRICS_PORT": str(busy.getsockname()[1]),
            "PROBE_DB_PATH": str(tmp_path / "p.sqlite3"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "PROBE_RUN_DIR": str(tmp_path / "run"),
            "EVENT_INTERVAL_SECOND": "1",
        }
        result = subprocess.run(probe_cmd("run"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [d["level"] for d in lines] == ["WARNING", "ERROR"], result.stderr
    assert "METRICS_PORT" in lines[1]["msg"]


def test_repeated_lines_are_limited_per_kind_and_dataset_and_summarised() -> None:
    now = [0.0]
    repeat = log_mod.RepeatFilter(burst=3, window=10.0, clock=lambda: now[0])
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(repeat)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("repeat-test")
    logger.propagate = False
    logger.handlers[:] = [handler]
    try:
        for seqno in range(1000):  # a flood: one warning per frame
            logger.warning("event unknown seqno=%d", seqno, extra={"dataset": "flood"})
        logger.warning("event unknown seqno=%d", 5, extra={"dataset": "good"})  # its own allowance
        logger.info("received seqno=%d", 1)  # below WARNING: never limited
        now[0] = 10.5
        logger.error("something else")
        for _ in range(5):
            logger.warning("held back at the end")
        repeat.flush()
    finally:
        logger.handlers[:] = []
    lines = buffer.getvalue().splitlines()
    assert lines[:3] == ["event unknown seqno=0", "event unknown seqno=1", "event unknown seqno=2"]
    assert "event unknown seqno=5" in lines and "received seqno=1" in lines
    assert "997 more like this in the last 10s: event unknown seqno=999" in lines
    assert lines[6] == "something else"
    assert lines[-1] == "2 more like this in the last 0s: held back at the end"
    assert len(lines) == 11


def test_credentials_a_url_carries_are_redacted_by_their_shape(captured: io.StringIO) -> None:
    """A URL's password and its secret-named query values (any key naming a token, secret, password,
    key or auth, as `config check` hides them) never reach the log, even short or unknown to it:
    the listener logged its WEBSOCKET_URL as given, and urllib3 at DEBUG logs query strings."""
    logger = logging.getLogger("t")
    logger.info("subscribed to wss://probe:pw1@ws.example/sub?api_key=k-42&dataset_id=d")
    logger.info('"POST /collect?auth=a-99&X-Api-Key=k-77&client_secret=s-1 HTTP/1.1" 200')
    text = captured.getvalue()
    for leaked in ("pw1", "k-42", "a-99", "k-77", "s-1"):
        assert leaked not in text, text
    assert "ws.example/sub" in text and "dataset_id=d" in text and "probe:" in text
    logger.warning("missing: ORIGO_CLIENT_ID; or AUTH_ENABLED=false for a collector without auth")
    assert "AUTH_ENABLED=false" in captured.getvalue()  # a hint naming a setting is no secret

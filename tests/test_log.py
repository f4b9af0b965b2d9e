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

"""Deciding what a received message is, as pure logic."""

from __future__ import annotations

import json

from probe_listener.classify import Kind, MalformedReason, parse


def test_parse_classifies_every_kind_of_payload() -> None:
    own = "abcdef01"
    cases = {
        (b"\x00\x01", True): "binary",
        (b"x" * 100, False): "too_large",
        (b"\xff\xfe", False): "not_utf8",
        (b"{nope", False): "not_json",
        (b"[1, 2]", False): "not_object",
        (b'{"app_id": 5, "seqno": 1, "time_sent": "t"}', False): "fields",
        (b'{"app_id": "a", "seqno": true, "time_sent": "t"}', False): "fields",
        (b'{"app_id": "a", "seqno": "1", "time_sent": "t"}', False): "fields",
        (b'{"app_id": "a", "seqno": 1}', False): "fields",
    }
    for (payload, binary), reason in cases.items():
        message = parse(payload, binary, 64, own)
        assert (message.kind, message.reason) == (Kind.MALFORMED, MalformedReason(reason)), payload
    other = parse(b'{"app_id": "12345678", "seqno": 3, "time_sent": "2026-11-28T00:00:00Z"}\n', False, 99, own)
    assert (other.kind, other.app_id) == (Kind.WRONG_APPID, "12345678")
    ours = parse(
        b'{"app_id": "abcdef01", "seqno": 3, "time_sent": "2026-11-28T00:00:00Z", "extra": 1}\n', False, 99, own
    )
    assert (ours.kind, ours.seqno) == (Kind.OURS, 3)


def test_nothing_a_peer_sends_makes_parse_raise() -> None:
    own = "abcdef01"
    deep = b"[" * 100_000 + b"]" * 100_000
    assert parse(deep, False, 10**7, own).reason is MalformedReason.NOT_JSON
    for seqno in (2**63, -1, 0, 10**30, 1.5):
        payload = json.dumps({"app_id": own, "seqno": seqno, "time_sent": "2026-11-28T00:00:00+00:00"}).encode()
        assert parse(payload, False, 999, own).reason is MalformedReason.FIELDS, seqno
    assert parse(b'{"app_id": "a", "seqno": 1, "time_sent": "not a time"}', False, 999, own).reason == "fields"
    big = b'{"app_id": "a", "seqno": ' + b"9" * 5000 + b', "time_sent": "t"}'
    assert parse(big, False, 10**6, own).kind is Kind.MALFORMED


def test_time_sent_is_read_as_utc_unix_time() -> None:
    own = "abcdef01"
    for text, expected in (
        ("2026-11-28T00:00:00.250000+00:00", 1795824000.25),
        ("2026-11-28T01:00:00+01:00", 1795824000.0),
        ("2026-11-28T00:00:00Z", 1795824000.0),
        ("2026-11-28T00:00:00", 1795824000.0),
    ):
        payload = json.dumps({"app_id": own, "seqno": 1, "time_sent": text}).encode()
        assert parse(payload, False, 999, own).time_sent == expected, text

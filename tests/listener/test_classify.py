"""Deciding what a received message is, as pure logic."""

from __future__ import annotations

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
    other = parse(b'{"app_id": "12345678", "seqno": 3, "time_sent": "t"}\n', False, 64, own)
    assert (other.kind, other.app_id) == (Kind.WRONG_APPID, "12345678")
    ours = parse(b'{"app_id": "abcdef01", "seqno": 3, "time_sent": "t", "extra": 1}\n', False, 99, own)
    assert (ours.kind, ours.seqno) == (Kind.OURS, 3)

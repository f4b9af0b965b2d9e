"""Deciding what a received message is, as pure logic."""

from __future__ import annotations

import json
import time

from probe_listener.classify import MAX_DEPTH, Kind, MalformedReason, parse
from shared import event as event_mod

OWN = "abcdef01"
KEY = bytes(range(32))


def classify(payload: bytes, binary: bool = False, max_bytes: int = 10**7, payload_bytes: int = 0):
    return parse(payload, binary, max_bytes, OWN, KEY, payload_bytes)


def sealed(seqno: int = 3, payload_bytes: int = 0, key: bytes = KEY, **extra: object) -> dict:
    event = event_mod.build(OWN, "ds", seqno, 1795824000.25, payload_bytes)
    event.update(extra)
    event_mod.seal(event, key)
    return event


def wire(event: dict) -> bytes:
    return (json.dumps(event) + "\n").encode()  # as the platform sends it: ASCII escapes, trailing newline


def test_parse_classifies_every_kind_of_payload() -> None:
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
        message = classify(payload, binary, 64)
        assert (message.kind, message.reason) == (Kind.MALFORMED, MalformedReason(reason)), payload
    other = classify(b'{"app_id": "12345678", "seqno": 3, "time_sent": "2026-11-28T00:00:00Z"}\n')
    assert (other.kind, other.app_id) == (Kind.WRONG_APPID, "12345678")
    ours = classify(wire(sealed(extra=1)))
    assert (ours.kind, ours.seqno, ours.integrity) == (Kind.OURS, 3, event_mod.Integrity.INTACT)


def test_nothing_a_peer_sends_makes_parse_raise() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert classify(deep).reason is MalformedReason.TOO_DEEP
    for seqno in (2**63, -1, 0, 10**30, 1.5):
        payload = json.dumps({"app_id": OWN, "seqno": seqno, "time_sent": "2026-11-28T00:00:00+00:00"}).encode()
        assert classify(payload).reason is MalformedReason.FIELDS, seqno
    assert classify(b'{"app_id": "a", "seqno": 1, "time_sent": "not a time"}').reason == "fields"
    big = b'{"app_id": "a", "seqno": ' + b"9" * 5000 + b', "time_sent": "t"}'
    assert classify(big).kind is Kind.MALFORMED


def test_a_lone_surrogate_is_checked_like_any_text_not_an_exception() -> None:
    # "\ud800" is valid JSON and valid UTF-8 on the wire, but no character: a digest over
    # UTF-8 could not be made of it (UnicodeEncodeError took the subscription down).
    event = sealed()
    event["z"] = "\ud800"
    payload = wire(event)
    assert b"\\ud800" in payload
    message = classify(payload)  # our seal of the event as sent, a field added on the way
    assert (message.kind, message.integrity) == (Kind.OURS, event_mod.Integrity.ALTERED)
    assert event_mod.differences(message.doc, 0) == ["fields added: z"]
    unsealed = {k: v for k, v in event.items() if k != "digest"}
    assert classify(wire(unsealed)).reason is MalformedReason.FORGED
    surrogate_key = {**event, "\udfff": 1}
    assert "\\udfff" in event_mod.differences(classify(wire(surrogate_key)).doc, 0)[0]
    # sealed with the surrogate in it, by us: intact (the canonical form escapes it)
    ours = sealed(z="\ud800")
    assert classify(wire(ours)).integrity is event_mod.Integrity.INTACT


def test_nesting_that_json_loads_accepts_but_a_digest_could_not_serialise_is_too_deep() -> None:
    for levels in (MAX_DEPTH + 1, 990, 992, 995):
        event = sealed()
        event["z"] = json.loads("[" * levels + "]" * levels) if levels < 900 else None
        text = json.dumps(event)[:-1] + ', "n": ' + "[" * levels + "]" * levels + "}"
        message = classify(text.encode())
        assert (message.kind, message.reason) == (Kind.MALFORMED, MalformedReason.TOO_DEEP), levels
    shallow = sealed(z=json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)))
    assert classify(wire(shallow)).kind is Kind.OURS


def test_a_copy_resealed_without_our_key_is_forged_whatever_its_timing() -> None:
    exact = sealed()
    resealed = dict(exact)
    resealed["digest"] = "sha256:" + event_mod.hashlib.sha256(b"anything").hexdigest()  # the old unkeyed seal
    unsealed = {k: v for k, v in exact.items() if k != "digest"}
    other_key = sealed(key=bytes(32))
    for copy in (resealed, unsealed, other_key, {**exact, "digest": 5}, {**exact, "digest": "hmac-sha256:" + "0" * 64}):
        message = classify(wire(copy))
        assert (message.kind, message.reason) == (Kind.MALFORMED, MalformedReason.FORGED), copy.get("digest")


def test_a_copy_altered_on_the_way_keeps_our_seal_of_the_original_and_counts_as_ours() -> None:
    event = sealed(payload_bytes=600)
    pad = event["padding"]
    event["padding"] = pad[:10] + ("0" if pad[10] != "0" else "1") + pad[11:]
    message = classify(wire(event), payload_bytes=600)
    assert (message.kind, message.integrity) == (Kind.OURS, event_mod.Integrity.ALTERED)
    assert event_mod.differences(message.doc, message.padding) == ["padding differs, first at offset 10"]
    added = sealed()
    added["x"] = 1
    message = classify(wire(added))
    assert message.integrity is event_mod.Integrity.ALTERED
    assert event_mod.differences(message.doc, 0) == ["fields added: x"]


def test_comparing_a_huge_altered_copy_stops_at_the_first_difference() -> None:
    size = 60_000_000
    expected = event_mod.padding(OWN, "ds", 3, size)
    copy = "0" + expected[1:] if expected[0] != "0" else "1" + expected[1:]
    altered = copy[:-1] + ("0" if copy[-1] != "0" else "1")  # many differences, one to report
    started = time.process_time()
    assert event_mod.first_difference(altered, expected) == 0
    assert event_mod.first_difference(expected[:-5] + "zzzzz", expected) == size - 5
    assert event_mod.first_difference(expected, expected) is None
    assert event_mod.first_difference(expected[:100], expected) == 100
    # one pass at C speed, not a list of every offset (that took 7.4 s and 2.6 GB): generous bound
    assert time.process_time() - started < 5


def test_time_sent_is_read_as_utc_unix_time() -> None:
    for text, expected in (
        ("2026-11-28T00:00:00.250000+00:00", 1795824000.25),
        ("2026-11-28T01:00:00+01:00", 1795824000.0),
        ("2026-11-28T00:00:00Z", 1795824000.0),
        ("2026-11-28T00:00:00", 1795824000.0),
    ):
        payload = json.dumps({"app_id": "12345678", "seqno": 1, "time_sent": text}).encode()
        assert classify(payload).time_sent == expected, text


def test_each_way_a_padding_can_differ_has_its_phrase() -> None:
    assert event_mod.padding_difference(None, None) is None
    assert event_mod.padding_difference("abc", "abc") is None
    assert event_mod.padding_difference(None, "abc") == "padding missing"
    assert event_mod.padding_difference(7, "abc") == "padding not a string"
    assert event_mod.padding_difference("abcd", None) == "padding added (4 characters)"
    assert event_mod.padding_difference("abd", "abc") == "padding differs, first at offset 2"
    assert event_mod.padding_difference("ab", "abc") == "padding of 2 characters, expected 3; first difference at 2"
    assert event_mod.added_fields({"app_id": "a", "seqno": 1}) is None
    assert event_mod.added_fields({f"f{i}": i for i in range(7)}) == "fields added: f0, f1, f2, f3, f4 (+2)"
    # nothing the probe can name: a field it cannot recompute
    assert event_mod.differences({"app_id": "a", "seqno": 1, "time_sent": "t"}, 0) == [
        "a field the probe cannot recompute (trace_id, or the digest itself)"
    ]

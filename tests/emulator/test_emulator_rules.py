"""The emulator's decisions as pure logic: what a post carries or why it is refused, the token
endpoint's answers, fault settings as typed and checked, who must show the control token."""

from __future__ import annotations

import json

import pytest

from emulator.collector import TOO_LARGE, Refusal, events_of
from emulator.controls import needs_token, released
from emulator.faults import FaultError, Faults
from emulator.tokens import TokenIssuer, token_answer
from emulator.truth import Record
from shared.contract import MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES


def test_a_post_carries_one_event_or_a_list_of_them() -> None:
    assert events_of(b'{"seqno": 1}') == [{"seqno": 1}]
    assert events_of(b'[{"seqno": 1}, {"seqno": 2}]') == [{"seqno": 1}, {"seqno": 2}]


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        (b"{", Refusal(400, "Body is not a valid JSON document")),
        (b"\xff", Refusal(400, "Body is not a valid JSON document")),
        (b"[]", Refusal(400, "JSON document does not conform to the given schema")),
        (b'[{"a": 1}, 2]', Refusal(400, "JSON document does not conform to the given schema")),
        (b" " * (MAX_REQUEST_BYTES + 1), TOO_LARGE),
        (json.dumps([{}] * (MAX_EVENTS_PER_REQUEST + 1)).encode(), TOO_LARGE),
        (json.dumps({"padding": "x" * MAX_EVENT_BYTES}).encode(), TOO_LARGE),
    ],
)
def test_a_post_the_platform_refuses_gets_its_status_and_message(body: bytes, refusal: Refusal) -> None:
    assert events_of(body) == refusal


def test_the_token_endpoint_answers_the_client_credentials_grant_only() -> None:
    issuer = TokenIssuer("emulator/realms/test")
    good = {"grant_type": "client_credentials", "client_id": "probe", "client_secret": "s3cret"}
    answer, status = token_answer(good, "probe", "s3cret", issuer, 120)
    assert status == 200 and answer["expires_in"] == 120 and answer["token_type"] == "Bearer"
    assert issuer.verify(answer["access_token"])
    assert token_answer({**good, "grant_type": "password"}, "probe", "s3cret", issuer, 120) == (
        {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"},
        400,
    )
    for wrong in ({"client_secret": "guess"}, {"client_id": "other"}):
        answer, status = token_answer({**good, **wrong}, "probe", "s3cret", issuer, 120)
        assert (status, answer["error"]) == (401, "unauthorized_client")


def test_fault_settings_are_typed_and_checked() -> None:
    faults = Faults().updated({"drop_rate": "0.5", "seed": "7", "collector_error_statuses": 429, "close_code": 1011.0})
    assert (faults.drop_rate, faults.seed, faults.collector_error_statuses, faults.close_code) == (0.5, 7, (429,), 1011)
    # The value as converted, as the emulator always named it.
    with pytest.raises(FaultError, match=r"'delay_ms': -1.0 is not a valid float"):
        Faults().updated({"delay_ms": -1})
    with pytest.raises(FaultError, match=r"'paused': 1 is not a valid bool"):
        Faults().updated({"paused": 1})
    with pytest.raises(FaultError, match=r"did you mean 'drop_rate'"):
        Faults().updated({"drop_rat": 0.1})
    with pytest.raises(FaultError, match=r"'drop_rate' must be between 0 and 1"):
        Faults().updated({"drop_rate": 2})
    with pytest.raises(FaultError, match=r"collector_error_statuses"):
        Faults().updated({"collector_error_statuses": [404]})


def test_a_refused_location_and_refused_connections() -> None:
    assert not Faults().refuses("") and not Faults().refuses("oslo")
    assert Faults(refuse_connections=True).refuses("")
    one = Faults(refuse_subscriber="oslo")
    assert one.refuses("oslo") and not one.refuses("bergen") and not one.refuses("")


def test_every_control_but_health_needs_the_token_when_one_is_set() -> None:
    assert needs_token("/_emulator/faults", "t") and needs_token("/_emulator/truth", "t")
    assert not needs_token("/_emulator/health", "t")
    assert not needs_token("/event-collector/event/d/1", "t")
    assert not needs_token("/_emulator/faults", "")


def test_a_resume_releases_the_held_copies_of_datasets_no_longer_paused() -> None:
    a, b = (Record(i, name, "1", {}, 0.0) for i, name in enumerate(("a", "b")))
    keep, release = released([(a, "A"), (b, "B"), (a, "A2")], lambda name: name == "b")
    assert (keep, release) == ([(b, "B")], [(a, "A"), (a, "A2")])

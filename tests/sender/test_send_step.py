"""The send step in-process, against a scripted collector and a real store: the event is on
record before it is posted, its stamp is sealed in, and the post's outcome is recorded once,
under the reason the metrics use (the sender's record and `probe check`'s alike)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from probe_sender.collector import Collector, PostError, _Final, _Retriable, judge
from probe_sender.send_step import SendStep
from shared import config
from shared.event import GROUP_FIELD, LOCATION_FIELD, Integrity, integrity
from shared.store import EventState, Store
from testkit.http_stub import Reply, sequence, serve
from tests.helpers import ROOT


def dataset() -> config.Dataset:
    env = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local", "DATASET_ID": "step-ds"}
    return config.load(env).datasets[0]


def step_for(store: Store, url: str, stamp: dict[str, str] | None = None) -> SendStep:
    ds = dataset()
    collector = Collector(f"{url}/event-collector/event/{ds.id}/{ds.version}", None, 2.0, requests.Session())
    return SendStep(store, store.app_id(), ds, collector, store.event_key(), stamp=stamp or {})


def test_the_event_is_on_record_before_its_post_and_its_stamp_is_sealed_in(tmp_path: Path) -> None:
    stamp = {LOCATION_FIELD: "eu-north-1a", GROUP_FIELD: "blue"}
    with serve(sequence(Reply(200))) as stub, Store(tmp_path / "probe.sqlite3") as store:
        step = step_for(store, stub.url, stamp)
        event = step.record(1000.0)
        (row,) = store.events(step.app_id)
        assert (row.seqno, row.sent_at, row.state) == (event["seqno"], 1000.0, EventState.PENDING)
        assert not stub.requests  # recorded, not yet posted
        result = step.post(event)
        (row,) = store.events(step.app_id)
        key = store.event_key()
    assert result.ok and row.state is EventState.POSTED and row.post_error is None
    (request,) = stub.requests
    posted = json.loads(request.body)
    assert posted == event and {k: posted[k] for k in stamp} == stamp
    assert integrity(posted, key, step.ds.payload_bytes)[0] is Integrity.INTACT


def test_a_failed_post_is_recorded_under_its_reason_and_its_problem_names_the_dataset(tmp_path: Path) -> None:
    with serve(sequence(Reply(404))) as stub, Store(tmp_path / "probe.sqlite3") as store:
        step = step_for(store, stub.url)
        result = step.post(step.record(1000.0))
        (row,) = store.events(step.app_id)
    assert (row.state, row.post_error) == (EventState.POST_FAILED, PostError.HTTP_4XX)
    name = f"{step.ds.id}/{step.ds.version}"
    assert step.problem(result) == f"dataset {name} is not known to the collector (404): check its id and version"


@pytest.mark.parametrize(
    ("status", "accepted", "verdict"),
    [
        (200, True, 200),
        (204, True, 204),
        (200, False, _Final(PostError.BAD_ANSWER, 200)),
        (103, True, _Final(PostError.BAD_ANSWER, 103)),
        (600, True, _Final(PostError.BAD_ANSWER, 600)),
        (302, True, _Final(PostError.REDIRECT, 302)),
        (401, True, _Final(PostError.AUTH, 401)),
        (403, True, _Final(PostError.HTTP_4XX, 403)),
        (429, True, _Retriable(PostError.HTTP_429, 429)),
        (503, True, _Retriable(PostError.HTTP_5XX, 503)),
        (501, True, _Final(PostError.HTTP_5XX, 501)),
    ],
)
def test_a_status_is_judged_once_accepted_final_or_worth_a_retry(
    status: int, accepted: bool, verdict: int | _Final | _Retriable
) -> None:
    if isinstance(verdict, int):
        assert judge(status, accepted) == verdict
        return
    with pytest.raises(type(verdict)) as raised:
        judge(status, accepted)
    assert (raised.value.reason, raised.value.status) == (verdict.reason, verdict.status)

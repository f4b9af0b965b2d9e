"""One received frame -> one classification, one store change and its metrics; in-process, real store."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from probe_listener.receiver import Receiver
from shared import config
from shared import event as event_mod
from shared.store import EventState, Store
from tests.helpers import ROOT

_datasets = itertools.count()


@dataclass
class Bench:
    receiver: Receiver
    store: Store
    app_id: str
    dataset: str

    def send(self, sent_at: float) -> int:
        seqno = self.store.record_send(self.app_id, self.dataset, "1", sent_at)
        self.store.record_post(self.app_id, self.dataset, seqno, True, None, sent_at + 0.01)
        return seqno

    def frame(self, seqno: int, at: float, app_id: str | None = None, sent_at: float | None = None) -> None:
        """A frame as the pipeline delivers it: the event as the sender made it, unless told otherwise."""
        if sent_at is None:
            rows = {e.seqno: e.sent_at for e in self.store.events(self.app_id)}
            sent_at = rows.get(seqno, 0.0)
        time_sent = datetime.fromtimestamp(sent_at, UTC).isoformat(timespec="microseconds")
        event = {"app_id": app_id or self.app_id, "seqno": seqno, "time_sent": time_sent, "dataset": self.dataset}
        event_mod.seal(event, self.store.event_key())
        self.deliver(event, at)

    def deliver(self, event: dict, at: float) -> None:
        self.receiver.handle((json.dumps(event) + "\n").encode(), False, at)

    def count(self, name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"dataset": self.dataset, **labels}) or 0.0

    def state(self, seqno: int) -> EventState:
        return next(e.state for e in self.store.events(self.app_id) if e.seqno == seqno)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    dataset = f"receiver-test-{next(_datasets)}"  # metrics of this process add up across tests
    env = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local", "DATASET_ID": dataset}
    cfg = config.load({**env, "MAX_MESSAGE_BYTES": "1024"})
    with Store(tmp_path / "probe.sqlite3") as store:
        app_id = store.app_id()
        yield Bench(Receiver(cfg, cfg.datasets[0], store, app_id), store, app_id, dataset)


def test_a_first_arrival_is_received_with_its_latency(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.frame(seqno, 1000.25)
    assert bench.state(seqno) is EventState.RECEIVED
    assert bench.count("probe_events_received_total") == 1
    assert bench.count("probe_event_latency_seconds_sum") == pytest.approx(0.25)
    assert bench.count("probe_event_latency") == pytest.approx(0.25)
    assert bench.count("probe_last_event_received_timestamp_seconds") == 1000.25


def test_a_second_copy_is_a_duplicate_and_nothing_else(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.frame(seqno, 1000.2)
    bench.frame(seqno, 1000.9)
    assert bench.count("probe_events_duplicated_total") == 1
    assert bench.count("probe_events_received_total") == 1
    assert bench.count("probe_event_latency_seconds_count") == 1


def test_a_replayed_copy_is_noise_to_the_budget_and_its_line_is_limited(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone on the dataset reads our events, seal and all, and can send one back at full speed.
    Each copy is a duplicate, truly ours: but only a first arrival comes at our send rate, so only
    it may go unbudgeted; the copies used to pass as ours (no share of CPU held them back) with an
    INFO line each (which no limit holds back)."""
    seqno = bench.send(1000.0)
    time_sent = datetime.fromtimestamp(1000.0, UTC).isoformat(timespec="microseconds")
    event = {"app_id": bench.app_id, "seqno": seqno, "time_sent": time_sent, "dataset": bench.dataset}
    event_mod.seal(event, bench.store.event_key())
    payload = (json.dumps(event) + "\n").encode()
    assert bench.receiver.handle(payload, False, 1000.2) is True
    caplog.set_level(logging.DEBUG)
    assert [bench.receiver.handle(payload, False, 1000.3 + i / 1000) for i in range(5)] == [False] * 5
    assert bench.count("probe_events_duplicated_total") == 5  # still counted, each once
    lines = [r for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(lines) == 5 and all(r.levelno >= logging.WARNING for r in lines)  # the repeat limit's level


def test_a_replayed_event_is_traced_up_to_its_first_duplicate(bench: Bench) -> None:
    """Each copy used to be an X-Ray segment (billed per segment): a replay flood, a bill."""

    class Segments:  # the tracer's interface, recording what it would send
        enabled = True

        def __init__(self) -> None:
            self.sent: list[str] = []

        def arrival(self, trace_id: object, dataset: str, seqno: int, kind: str, latency: object) -> None:
            self.sent.append(kind)

    segments = Segments()
    bench.receiver.tracer = segments  # type: ignore[assignment]
    seqno = bench.send(1000.0)
    for i in range(20):
        bench.frame(seqno, 1000.2 + i / 100)
    assert segments.sent == ["received", "duplicate"]
    assert bench.count("probe_events_duplicated_total") == 19


def test_an_older_seqno_after_a_newer_one_is_out_of_order(bench: Bench) -> None:
    first, second = bench.send(1000.0), bench.send(1001.0)
    bench.frame(second, 1001.1)
    bench.frame(first, 1001.2)
    assert bench.count("probe_events_out_of_order_total") == 1
    assert bench.count("probe_events_received_total") == 2


def test_an_arrival_after_the_judgement_is_late(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.store.subscription_opened(bench.dataset, 900.0)
    judged = bench.store.judge_overdue(1400.0, {bench.dataset: 300.0}, 300.0)
    assert judged[bench.dataset][EventState.LOST] == 1
    bench.frame(seqno, 1401.0)
    assert bench.state(seqno) is EventState.LATE
    assert bench.count("probe_events_late_total") == 1 and bench.count("probe_events_received_total") == 1


def test_a_clock_step_is_clamped_to_zero_and_counted(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.frame(seqno, 999.0)
    assert bench.count("probe_event_latency_clamped_total") == 1
    assert bench.count("probe_event_latency") == 0.0


def test_other_instances_unknown_and_malformed_messages_change_nothing_in_the_store(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.frame(seqno, 1000.1, app_id="12345678")
    bench.frame(999, 1000.2)
    bench.receiver.handle(b"{not json", False, 1000.3)
    bench.receiver.handle(b"\x00", True, 1000.4)
    bench.receiver.handle(b"x" * 1025, False, 1000.5)
    assert bench.count("probe_wrong_appid_total") == 1
    assert bench.count("probe_events_unknown_total") == 1
    assert bench.count("probe_events_malformed_total", reason="not_json") == 1
    assert bench.count("probe_events_malformed_total", reason="binary") == 1
    assert bench.count("probe_events_malformed_total", reason="too_large") == 1
    fields = REGISTRY.get_sample_value("probe_events_malformed_total", {"dataset": bench.dataset, "reason": "fields"})
    assert fields == 0  # the series exists before any such message
    assert bench.state(seqno) is EventState.POSTED


def test_a_forged_copy_with_another_send_time_is_skipped_and_the_real_one_counts(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.frame(seqno, 1000.3, sent_at=999.0)  # earlier time_sent: would claim a longer latency
    assert bench.count("probe_events_malformed_total", reason="forged") == 1
    assert bench.state(seqno) is EventState.POSTED and bench.count("probe_events_received_total") == 0
    bench.frame(seqno, 1000.4)
    assert bench.state(seqno) is EventState.RECEIVED
    assert bench.count("probe_event_latency") == pytest.approx(0.4)
    assert bench.count("probe_events_duplicated_total") == 0


def test_hostile_frames_are_malformed_and_the_next_event_still_counts(bench: Bench) -> None:
    deep = b"[" * 30000 + b"]" * 30000
    huge_seqno = json.dumps({"app_id": bench.app_id, "seqno": 2**63, "time_sent": "2026-11-28T00:00:00+00:00"})
    bad_time = json.dumps({"app_id": bench.app_id, "seqno": 1, "time_sent": "yesterday"})
    for payload in (deep[:1000], huge_seqno.encode(), bad_time.encode()):
        bench.receiver.handle(payload, False, 1000.0)
    bench.receiver.handle(deep, False, 1000.0)  # larger than MAX_MESSAGE_BYTES here: too large
    assert bench.count("probe_events_malformed_total", reason="too_deep") == 1
    assert bench.count("probe_events_malformed_total", reason="fields") == 2
    assert bench.count("probe_events_malformed_total", reason="too_large") == 1
    seqno = bench.send(1000.0)
    bench.frame(seqno, 1000.1)
    assert bench.state(seqno) is EventState.RECEIVED


def sealed(bench: Bench, seqno: int, payload_bytes: int = 600) -> dict:
    sent_at = next(e.sent_at for e in bench.store.events(bench.app_id) if e.seqno == seqno)
    event = event_mod.build(bench.app_id, bench.dataset, seqno, sent_at, payload_bytes)
    event_mod.seal(event, bench.store.event_key())
    return event


def test_an_intact_sealed_event_is_received_and_not_corrupted(bench: Bench) -> None:
    seqno = bench.send(1000.0)
    bench.deliver(sealed(bench, seqno), 1000.5)
    assert bench.state(seqno) is EventState.RECEIVED
    assert bench.count("probe_events_corrupted_total") == 0


def test_an_altered_copy_is_counted_corrupted_logged_with_what_differed_and_still_classified(
    bench: Bench, caplog: pytest.LogCaptureFixture
) -> None:
    seqno = bench.send(1000.0)
    event = sealed(bench, seqno)
    pad = event["padding"]
    event["padding"] = pad[:10] + ("0" if pad[10] != "0" else "1") + pad[11:]
    bench.deliver(event, 1000.5)
    assert bench.state(seqno) is EventState.RECEIVED
    assert bench.count("probe_events_corrupted_total") == 1
    assert bench.count("probe_events_received_total") == 1
    altered = [r.getMessage() for r in caplog.records if "altered" in r.getMessage()]
    assert len(altered) == 1 and "padding differs, first at offset 10" in altered[0]


def test_a_field_added_on_the_way_is_named(bench: Bench, caplog: pytest.LogCaptureFixture) -> None:
    seqno = bench.send(1000.0)
    event = sealed(bench, seqno, payload_bytes=0)
    event["injected"] = 1
    bench.deliver(event, 1000.5)
    assert bench.count("probe_events_corrupted_total") == 1
    assert any("fields added: injected" in r.getMessage() for r in caplog.records)


def test_an_event_of_a_sibling_entry_is_left_to_its_own_subscription(bench: Bench) -> None:
    bench.receiver.siblings = frozenset({"sibling"})
    seqno = bench.send(1000.0)
    event = sealed(bench, seqno)
    event["dataset"] = "sibling"  # the same seqno of the other entry on the same dataset id
    bench.deliver(event, 1000.5)
    assert bench.state(seqno) is EventState.POSTED  # untouched
    assert bench.count("probe_events_received_total") == 0 and bench.count("probe_events_unknown_total") == 0

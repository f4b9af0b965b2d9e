"""Peers: another instance of this instance's group is a second witness, never a foreign instance."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import REGISTRY

from probe_listener.classify import UNNAMED, Kind, parse
from probe_listener.receiver import MAX_PEER_LOCATIONS, OTHER_LOCATION, Receiver
from shared import config
from shared import event as event_mod
from shared.store import Store
from tests.helpers import ROOT

OWN = "abcdef01"
KEY = b"k" * 32
SENT = "2026-11-28T00:00:00Z"


def frame(**fields: object) -> bytes:
    return (json.dumps({"app_id": "12345678", "seqno": 3, "time_sent": SENT, **fields}) + "\n").encode()


def test_an_event_of_ones_own_group_is_a_peers_named_by_its_location() -> None:
    message = parse(frame(group="pair", location="zone-b", dataset="orders"), False, 999, OWN, KEY, 0, own_group="pair")
    assert (message.kind, message.location, message.dataset, message.app_id) == (
        Kind.PEER,
        "zone-b",
        "orders",
        "12345678",
    )


def test_another_groups_or_an_ungrouped_event_stays_foreign() -> None:
    cases = [
        (frame(group="other", location="zone-b"), "pair"),  # another group
        (frame(location="zone-b"), "pair"),  # an ungrouped instance (or the original service)
        (frame(group=["pair"]), "pair"),  # not a text
        (frame(group="pair", location="zone-b"), ""),  # this instance is in no group
        (frame(group="", location="zone-b"), ""),  # "no group" is no group to share
    ]
    for payload, own_group in cases:
        assert parse(payload, False, 999, OWN, KEY, 0, own_group=own_group).kind is Kind.WRONG_APPID, payload


def test_a_peer_location_that_is_no_label_value_is_unnamed() -> None:
    for location in (None, 5, "", "two words", "x" * 101, 'a"b', "-dash", "zone\nb"):
        message = parse(frame(group="pair", location=location), False, 999, OWN, KEY, 0, own_group="pair")
        assert (message.kind, message.location) == (Kind.PEER, UNNAMED), location


def test_our_own_event_is_ours_whatever_its_group_and_an_altered_copy_still_ours() -> None:
    doc = event_mod.build(OWN, "orders", 3, 1_800_000_000.0, 400)
    doc.update(location="zone-a", group="pair")  # as the sender adds them, before sealing
    event_mod.seal(doc, KEY)
    ours = parse((json.dumps(doc) + "\n").encode(), False, 9999, OWN, KEY, 400, own_group="pair")
    assert (ours.kind, ours.integrity) == (Kind.OURS, event_mod.Integrity.INTACT)
    doc["added"] = 1  # altered on the way: the seal of the event as sent, location and group included
    altered = parse((json.dumps(doc) + "\n").encode(), False, 9999, OWN, KEY, 400, own_group="pair")
    assert (altered.kind, altered.integrity) == (Kind.OURS, event_mod.Integrity.ALTERED)
    assert event_mod.differences(altered.doc or {}, altered.padding) == ["fields added: added"]


def test_the_receiver_counts_peers_by_location_never_as_foreign_and_bounds_the_locations(tmp_path: Path) -> None:
    dataset = "peer-test"
    env = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local", "DATASET_ID": dataset}
    cfg = config.load({**env, "PROBE_GROUP": "pair", "PROBE_LOCATION": "zone-a"})
    count = lambda name, **labels: REGISTRY.get_sample_value(name, {"dataset": dataset, **labels}) or 0.0  # noqa: E731
    with Store(tmp_path / "probe.sqlite3") as store:
        receiver = Receiver(cfg, cfg.datasets[0], store, store.app_id())
        for seqno in range(1, 4):
            receiver.handle(frame(seqno=seqno, group="pair", location="zone-b", dataset=dataset), False, 1.0)
        receiver.handle(frame(group="strangers", location="zone-c"), False, 1.0)
        assert count("probe_peer_events_total", peer_location="zone-b") == 3
        assert count("probe_wrong_appid_total") == 1  # only the other group's
        # A hostile peer naming a new location in every event makes no more than the bound's series.
        for n in range(100):
            receiver.handle(frame(group="pair", location=f"made-up-{n}"), False, 1.0)
        named = {
            s.labels["peer_location"]
            for metric in REGISTRY.collect()
            if metric.name == "probe_peer_events"
            for s in metric.samples
            if s.labels.get("dataset") == dataset and s.name.endswith("_total")
        }
        assert len(named) == MAX_PEER_LOCATIONS + 1 and OTHER_LOCATION in named
        assert count("probe_peer_events_total", peer_location=OTHER_LOCATION) == 100 - (MAX_PEER_LOCATIONS - 1)
        assert count("probe_wrong_appid_total") == 1

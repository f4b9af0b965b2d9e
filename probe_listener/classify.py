"""Deciding what one received websocket message is, before the store is asked anything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from shared.config import LABEL_VALUE
from shared.event import DATASET_FIELD, GROUP_FIELD, LOCATION_FIELD, TRACE_FIELD, Integrity, integrity
from shared.tracing import TRACE_ID

# seqnos are SQLite integers: anything larger cannot be ours, and must not reach the store.
MAX_SEQNO = 2**63 - 1
# Our events are flat. Anything nested deeper is no event of ours, and a document nested close to
# the interpreter's recursion limit passes json.loads but not the json.dumps its digest needs.
MAX_DEPTH = 32


class MalformedReason(StrEnum):
    """Why a message is not a well-formed probe event (the `reason` label of probe_events_malformed)."""

    BINARY = "binary"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"  # arrays or objects nested deeper than MAX_DEPTH
    NOT_OBJECT = "not_object"
    FIELDS = "fields"  # app_id, seqno or time_sent missing, of the wrong type or out of range
    FORGED = "forged"  # our app_id, but not sealed with our key, or not at the send time on record
    UNREADABLE = "unreadable"  # reading it failed in a way no check foresaw (a bug: logged with its traceback)


class Kind(StrEnum):
    MALFORMED = "malformed"
    WRONG_APPID = "wrong_appid"
    PEER = "peer"  # another instance's event, of this instance's group (PROBE_GROUP)
    OURS = "ours"


# A peer's location when it names none, or none usable as a label value.
UNNAMED = "unnamed"


@dataclass(frozen=True)
class Message:
    kind: Kind
    reason: MalformedReason | None = None  # for MALFORMED
    app_id: str | None = None
    seqno: int | None = None
    time_sent: float | None = None  # Unix time
    trace_id: str | None = None  # the X-Ray trace the sender recorded the event in, when tracing is on
    dataset: str | None = None  # the probe's dataset entry it was sent for (None: an event of an older probe)
    integrity: Integrity = Integrity.INTACT
    doc: dict | None = None  # the event itself, kept only when it arrived altered (to say what differed)
    padding: int = 0  # characters of padding of the event as sent
    location: str | None = None  # for PEER: where the peer runs (a label value, or UNNAMED)


def parse(
    payload: bytes, binary: bool, max_bytes: int, own_app_id: str, key: bytes, payload_bytes: int, own_group: str = ""
) -> Message:
    """Classify a frame's payload: malformed, another instance's event, or one of ours.

    A well-formed probe event is a text frame holding a JSON object with a string
    `app_id`, an integer `seqno` (1 to 2**63-1) and an ISO-8601 `time_sent` (other
    fields are allowed and ignored); one of ours also carries our seal (`key`; see
    shared/event.py). Nothing a peer sends can make this raise: what no check foresaw
    is `unreadable`, so one frame never costs the subscription.

    Another app_id is a peer's when the event names `own_group` (not empty) as its group, and
    a foreign instance's otherwise. The group is a label, not a proof: a peer seals with its own
    key, which this instance does not hold, so an event that claims our group gains only being
    counted as a peer's.
    """
    try:
        return _parse(payload, binary, max_bytes, own_app_id, key, payload_bytes, own_group)
    except Exception:  # the frame is counted under a reason; the caller logs the bug
        return Message(Kind.MALFORMED, MalformedReason.UNREADABLE)


def _parse(
    payload: bytes, binary: bool, max_bytes: int, own_app_id: str, key: bytes, payload_bytes: int, own_group: str
) -> Message:
    doc = _document(payload, binary, max_bytes)
    if isinstance(doc, MalformedReason):
        return Message(Kind.MALFORMED, doc)
    fields = _required(doc)
    if fields is None:
        return Message(Kind.MALFORMED, MalformedReason.FIELDS)
    app_id, seqno, sent = fields
    if app_id != own_app_id:
        return _other(doc, app_id, seqno, sent, own_group)
    return _ours(doc, app_id, seqno, sent, key, payload_bytes)


def _document(payload: bytes, binary: bool, max_bytes: int) -> dict | MalformedReason:
    """The JSON object a frame holds, or why it holds none."""
    if binary:
        return MalformedReason.BINARY
    if len(payload) > max_bytes:
        return MalformedReason.TOO_LARGE
    try:
        data = payload.decode("utf-8")
    except UnicodeDecodeError:
        return MalformedReason.NOT_UTF8
    try:
        doc = json.loads(data)
    except RecursionError:
        return MalformedReason.TOO_DEEP
    except ValueError:
        return MalformedReason.NOT_JSON
    if not isinstance(doc, dict):
        return MalformedReason.NOT_OBJECT
    if depth(doc) > MAX_DEPTH:
        return MalformedReason.TOO_DEEP
    return doc


def _required(doc: dict) -> tuple[str, int, float] | None:
    """(app_id, seqno, time_sent as Unix time) of a probe event, or None when one is missing or bad."""
    app_id, seqno, time_sent = doc.get("app_id"), doc.get("seqno"), doc.get("time_sent")
    if not isinstance(app_id, str) or not isinstance(time_sent, str):
        return None
    if not isinstance(seqno, int) or isinstance(seqno, bool) or not 1 <= seqno <= MAX_SEQNO:
        return None
    sent = parse_time(time_sent)
    return None if sent is None else (app_id, seqno, sent)


def _other(doc: dict, app_id: str, seqno: int, sent: float, own_group: str) -> Message:
    """Another instance's event: a peer's when it names our group, a foreign instance's otherwise."""
    if own_group and doc.get(GROUP_FIELD) == own_group:
        dataset = doc.get(DATASET_FIELD)
        return Message(
            Kind.PEER,
            app_id=app_id,
            seqno=seqno,
            time_sent=sent,
            dataset=dataset if isinstance(dataset, str) else None,
            location=peer_location(doc.get(LOCATION_FIELD)),
        )
    return Message(Kind.WRONG_APPID, app_id=app_id, seqno=seqno, time_sent=sent)


def _ours(doc: dict, app_id: str, seqno: int, sent: float, key: bytes, payload_bytes: int) -> Message:
    """An event with our app_id: ours if sealed with our key."""
    dataset = doc.get(DATASET_FIELD)
    if dataset is not None and not isinstance(dataset, str):
        return Message(Kind.MALFORMED, MalformedReason.FIELDS)
    # Our app_id is no proof: anyone on the dataset reads it. Our seal is (a copy without it never
    # reaches the store, so a flood of such copies costs no write).
    sealed, padding = integrity(doc, key, payload_bytes)
    if sealed is Integrity.FORGED:
        return Message(Kind.MALFORMED, MalformedReason.FORGED, app_id=app_id, seqno=seqno, dataset=dataset)
    # Optional: events of a probe with tracing off carry none.
    trace_id = doc.get(TRACE_FIELD)
    if not isinstance(trace_id, str) or not TRACE_ID.match(trace_id):
        trace_id = None
    return Message(
        Kind.OURS,
        app_id=app_id,
        seqno=seqno,
        time_sent=sent,
        trace_id=trace_id,
        dataset=dataset,
        integrity=sealed,
        doc=doc if sealed is Integrity.ALTERED else None,
        padding=padding,
    )


def depth(doc: object) -> int:
    """How deeply arrays and objects nest in a parsed JSON document (a scalar is 0); no recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def peer_location(raw: object) -> str:
    """A peer's location as a label value: what PROBE_LOCATION allows, else UNNAMED."""
    return raw if isinstance(raw, str) and LABEL_VALUE.fullmatch(raw) else UNNAMED


def parse_time(text: str) -> float | None:
    """An ISO-8601 time as Unix time (UTC when it names no zone), or None."""
    if len(text) > 64:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

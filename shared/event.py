"""The probe's event on the wire: how the sender builds and seals it, how the listener checks it.

Fields: the original probe's `app_id`, `seqno` and `time_sent`; `dataset`, the name of the
probe's dataset entry (two entries may share one dataset id, and so one subscription's
stream); optional `padding`, for realistic event sizes; optional `trace_id`; and `digest`,
an HMAC-SHA256 of everything else under the instance's secret key (created with the store,
never sent). Anyone on the dataset can read our app_id and predict seqnos, send times and
padding; only the key's holders can seal, so a copy someone else made is told from ours.
The padding is a function of the event's identity, so the listener can rebuild the event as
it was sent and say what differed.

Nothing here raises on what a peer sends: every check is bounded and total.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from enum import StrEnum

DATASET_FIELD = "dataset"
# Who sent it, in a fleet (PROBE_GROUP, only when set; PROBE_LOCATION): an instance of one's own
# group is a peer, not a foreign instance (docs/fleet.md).
GROUP_FIELD = "group"
LOCATION_FIELD = "location"
PADDING_FIELD = "padding"
DIGEST_FIELD = "digest"
TRACE_FIELD = "trace_id"
DIGEST_PREFIX = "hmac-sha256:"
KEY_BYTES = 32
# The JSON around the padding (keys, quotes, the other fields): the padding makes up the rest.
ENVELOPE_BYTES = 200
# Comparing a copy with the event as sent goes this many characters at a time (at C speed),
# and stops at the first block that differs.
_BLOCK = 4096


class Integrity(StrEnum):
    INTACT = "intact"  # sealed with our key, and unchanged
    ALTERED = "altered"  # our seal of the event as sent, but the content changed on the way
    FORGED = "forged"  # no seal of ours: made by someone without the key (or not sealed at all)


def time_sent(sent_at: float) -> str:
    return datetime.fromtimestamp(sent_at, UTC).isoformat(timespec="microseconds")


def padding_size(payload_bytes: int) -> int:
    """Characters of padding an event of about `payload_bytes` carries."""
    return max(0, payload_bytes - ENVELOPE_BYTES) if payload_bytes > 0 else 0


def padding(app_id: str, dataset: str, seqno: int, size: int) -> str:
    """`size` hex characters that depend only on the event's identity (so they can be recomputed)."""
    if size <= 0:
        return ""
    seed = f"{app_id}:{dataset}:{seqno}".encode(errors="surrogatepass")
    return hashlib.shake_128(seed).hexdigest((size + 1) // 2)[:size]


def build(app_id: str, dataset: str, seqno: int, sent_at: float, payload_bytes: int = 0) -> dict:
    """The event as posted (before `seal`), padded to about `payload_bytes` when asked."""
    event: dict = {"app_id": app_id, "seqno": seqno, "time_sent": time_sent(sent_at), DATASET_FIELD: dataset}
    if payload_bytes > 0:
        event[PADDING_FIELD] = padding(app_id, dataset, seqno, padding_size(payload_bytes))
    return event


def _canonical(event: dict) -> bytes:
    """Every field but the digest, one way only. ASCII escapes: a lone surrogate is just text here.

    The caller bounds the nesting (classify does for what arrives), so this cannot recurse too deep.
    """
    body = {k: v for k, v in event.items() if k != DIGEST_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def digest_of(event: dict, key: bytes) -> str:
    return DIGEST_PREFIX + hmac.new(key, _canonical(event), hashlib.sha256).hexdigest()


def seal(event: dict, key: bytes) -> None:
    """Add the digest: the last change to the event before it is posted."""
    event[DIGEST_FIELD] = digest_of(event, key)


def as_sent(received: dict, size: int) -> dict:
    """The event as the sender built it with `size` characters of padding, from a copy's identity
    (and its trace id, which the sender adds before sealing): what an altered copy's seal must match."""
    app_id, dataset, seqno = received.get("app_id"), received.get(DATASET_FIELD), received.get("seqno")
    event: dict = {"app_id": app_id, "seqno": seqno, "time_sent": received.get("time_sent")}
    if dataset is not None:
        event[DATASET_FIELD] = dataset
    if size and isinstance(app_id, str) and isinstance(dataset, str) and isinstance(seqno, int):
        event[PADDING_FIELD] = padding(app_id, dataset, seqno, size)
    if isinstance(received.get(TRACE_FIELD), str):
        event[TRACE_FIELD] = received[TRACE_FIELD]
    for name in (LOCATION_FIELD, GROUP_FIELD):  # the sender adds them before sealing, as the trace id
        if isinstance(received.get(name), str):
            event[name] = received[name]
    return event


def integrity(received: dict, key: bytes, payload_bytes: int) -> tuple[Integrity, int]:
    """Ours and intact, ours but altered on the way, or not sealed by us at all; with the padding
    size of the event as sent (for `differences`).

    An altered copy still carries our seal of the event *as sent* (rebuilt from its identity,
    with the configured padding or the copy's length of it, should the setting have changed):
    only a copy of our own event can, so it is a real, if damaged, arrival. A copy whose seal
    is of neither was made without the key: a forgery, whatever its timing.
    """
    size = padding_size(payload_bytes)
    digest = received.get(DIGEST_FIELD)
    if not isinstance(digest, str) or not digest.startswith(DIGEST_PREFIX) or len(digest) > 128:
        return Integrity.FORGED, size
    if hmac.compare_digest(digest, digest_of(received, key)):
        return Integrity.INTACT, size
    pad = received.get(PADDING_FIELD)
    for candidate in dict.fromkeys((size, len(pad) if isinstance(pad, str) else size)):
        if hmac.compare_digest(digest, digest_of(as_sent(received, candidate), key)):
            return Integrity.ALTERED, candidate
    return Integrity.FORGED, size


def first_difference(a: str, b: str) -> int | None:
    """Offset of the first character where `a` and `b` differ (or where the shorter ends), or None.

    Block by block at C speed, stopping at the first block that differs: a 60 MB copy costs one
    pass, never a list of every differing offset."""
    n = min(len(a), len(b))
    for start in range(0, n, _BLOCK):
        end = min(start + _BLOCK, n)
        if a[start:end] != b[start:end]:
            return next(i for i in range(start, end) if a[i] != b[i])
    return None if len(a) == len(b) else n


# The fields the probe writes; any other is one added on the way.
KNOWN_FIELDS = frozenset(
    {
        "app_id",
        "seqno",
        "time_sent",
        DATASET_FIELD,
        PADDING_FIELD,
        DIGEST_FIELD,
        TRACE_FIELD,
        GROUP_FIELD,
        LOCATION_FIELD,
    }
)


def differences(received: dict, size: int) -> list[str]:
    """What differs between an altered copy and the event as the probe sent it (with `size`
    characters of padding); a few short phrases, for one log line. Bounded: it stops at the
    first difference of the padding."""
    sent = as_sent(received, size)
    found = [
        phrase
        for phrase in (padding_difference(received.get(PADDING_FIELD), sent.get(PADDING_FIELD)), added_fields(received))
        if phrase is not None
    ]
    return found or ["a field the probe cannot recompute (trace_id, or the digest itself)"]


def padding_difference(pad: object, expected: str | None) -> str | None:
    """How the padding received (`pad`) differs from the one sent, or None."""
    if expected is None and pad is None:
        return None
    if not isinstance(pad, str):
        return "padding missing" if pad is None else "padding not a string"
    if expected is None:
        return f"padding added ({len(pad)} characters)"
    at = first_difference(pad, expected)
    if at is None:
        return None
    if len(pad) != len(expected):
        return f"padding of {len(pad)} characters, expected {len(expected)}; first difference at {at}"
    return f"padding differs, first at offset {at}"


def added_fields(received: dict) -> str | None:
    """The fields a copy carries that the probe never writes, named (escaped, cut short), or None."""
    extra = [k for k in received if k not in KNOWN_FIELDS]
    if not extra:
        return None
    names = ", ".join(ascii(k)[1:-1][:40] for k in extra[:5])  # a peer's text: escaped and cut
    return "fields added: " + names + (f" (+{len(extra) - 5})" if len(extra) > 5 else "")

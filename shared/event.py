"""The probe's event on the wire: how the sender builds and seals it, how the listener checks it.

Fields: the original probe's `app_id`, `seqno` and `time_sent`; `dataset`, the name of the
probe's dataset entry (two entries may share one dataset id, and so one subscription's
stream); optional `padding`, for realistic event sizes; optional `trace_id`; and `digest`,
a SHA-256 of everything else, so that an event altered on its way is told from one intact.
The padding is a function of the event's identity, so the listener can say what differed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum

DATASET_FIELD = "dataset"
PADDING_FIELD = "padding"
DIGEST_FIELD = "digest"
DIGEST_PREFIX = "sha256:"
# The JSON around the padding (keys, quotes, the other fields): the padding makes up the rest.
ENVELOPE_BYTES = 200


class Integrity(StrEnum):
    INTACT = "intact"
    ALTERED = "altered"
    UNSEALED = "unsealed"  # no digest: an event of the original service, or of an older probe


def time_sent(sent_at: float) -> str:
    return datetime.fromtimestamp(sent_at, UTC).isoformat(timespec="microseconds")


def padding(app_id: str, dataset: str, seqno: int, size: int) -> str:
    """`size` hex characters that depend only on the event's identity (so they can be recomputed)."""
    if size <= 0:
        return ""
    seed = f"{app_id}:{dataset}:{seqno}".encode()
    return hashlib.shake_128(seed).hexdigest((size + 1) // 2)[:size]


def build(app_id: str, dataset: str, seqno: int, sent_at: float, payload_bytes: int = 0) -> dict:
    """The event as posted (before `seal`), padded to about `payload_bytes` when asked."""
    event: dict = {"app_id": app_id, "seqno": seqno, "time_sent": time_sent(sent_at), DATASET_FIELD: dataset}
    if payload_bytes > 0:
        event[PADDING_FIELD] = padding(app_id, dataset, seqno, max(0, payload_bytes - ENVELOPE_BYTES))
    return event


def digest_of(event: dict) -> str:
    body = {k: v for k, v in event.items() if k != DIGEST_FIELD}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DIGEST_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seal(event: dict) -> None:
    """Add the digest: the last change to the event before it is posted."""
    event[DIGEST_FIELD] = digest_of(event)


def integrity(event: dict) -> Integrity:
    digest = event.get(DIGEST_FIELD)
    if digest is None:
        return Integrity.UNSEALED
    if not isinstance(digest, str) or digest != digest_of(event):
        return Integrity.ALTERED
    return Integrity.INTACT


def differences(received: dict, padded: bool) -> list[str]:
    """What differs between an altered copy and the event as the probe sent it, as far as the
    event's identity can tell (its time_sent was checked against the store already); a few
    short phrases, for one log line."""
    app_id, dataset, seqno = received.get("app_id"), received.get(DATASET_FIELD), received.get("seqno")
    found: list[str] = []
    pad = received.get(PADDING_FIELD)
    if padded or pad is not None:
        if not isinstance(pad, str):
            found.append("padding missing" if pad is None else "padding not a string")
        else:
            expected = padding(str(app_id), str(dataset), seqno if isinstance(seqno, int) else 0, len(pad))
            at = [i for i, (a, b) in enumerate(zip(pad, expected, strict=True)) if a != b]
            if at:
                found.append(f"padding: {len(at)} character(s) differ, first at offset {at[0]}")
    known = {"app_id", "seqno", "time_sent", DATASET_FIELD, PADDING_FIELD, DIGEST_FIELD, "trace_id"}
    extra = sorted(str(k)[:40] for k in received if k not in known)
    if extra:
        found.append("fields added: " + ", ".join(extra[:5]))
    if not isinstance(received.get(DIGEST_FIELD), str):
        found.append("digest not a string")
    return found or ["a field the probe cannot recompute (the digest or trace_id)"]

"""Deciding what one received websocket message is, before the store is asked anything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    MALFORMED = "malformed"
    WRONG_APPID = "wrong_appid"
    OURS = "ours"


@dataclass(frozen=True)
class Message:
    kind: Kind
    reason: str | None = None  # for MALFORMED: binary, too_large, not_utf8, not_json, not_object, fields
    app_id: str | None = None
    seqno: int | None = None


def parse(payload: bytes, binary: bool, max_bytes: int, own_app_id: str) -> Message:
    """Classify a frame's payload: malformed, another instance's event, or one of ours.

    A well-formed probe event is a text frame holding a JSON object with a string
    `app_id`, an integer `seqno` and a string `time_sent` (other fields are allowed
    and ignored).
    """
    if binary:
        return Message(Kind.MALFORMED, "binary")
    if len(payload) > max_bytes:
        return Message(Kind.MALFORMED, "too_large")
    try:
        data = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Message(Kind.MALFORMED, "not_utf8")
    try:
        doc = json.loads(data)
    except ValueError:
        return Message(Kind.MALFORMED, "not_json")
    if not isinstance(doc, dict):
        return Message(Kind.MALFORMED, "not_object")
    app_id, seqno, time_sent = doc.get("app_id"), doc.get("seqno"), doc.get("time_sent")
    if not isinstance(app_id, str) or not isinstance(time_sent, str):
        return Message(Kind.MALFORMED, "fields")
    if not isinstance(seqno, int) or isinstance(seqno, bool) or seqno < 1:
        return Message(Kind.MALFORMED, "fields")
    if app_id != own_app_id:
        return Message(Kind.WRONG_APPID, app_id=app_id, seqno=seqno)
    return Message(Kind.OURS, app_id=app_id, seqno=seqno)

"""What the emulated collector accepts: the platform's limits on one post, as pure rules.

Kept apart from the server so that the contract's refusals (docs/platform.md) read in one place
and are tested without a socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from shared.contract import MAX_EVENT_BYTES, MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES


@dataclass(frozen=True)
class Refusal:
    """How the platform refuses a request: its status and the message of its JSON body."""

    status: int
    message: str

    def response(self) -> web.Response:
        return web.json_response({"message": self.message}, status=self.status)


TOO_LARGE = Refusal(413, "Request Entity Too Large")


def events_of(body: bytes) -> list[dict] | Refusal:
    """The events a collector post carries (one object, or a list of them), or its refusal."""
    if len(body) > MAX_REQUEST_BYTES:
        return TOO_LARGE
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Refusal(400, "Body is not a valid JSON document")
    events = doc if isinstance(doc, list) else [doc]
    if not events or not all(isinstance(e, dict) for e in events):
        return Refusal(400, "JSON document does not conform to the given schema")
    if len(events) > MAX_EVENTS_PER_REQUEST or any(len(json.dumps(e)) > MAX_EVENT_BYTES for e in events):
        return TOO_LARGE
    return events

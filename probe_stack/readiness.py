"""The /readyz rule: is the probe able to tell the truth about the pipeline right now?"""

from __future__ import annotations

from shared.config import Config
from shared.store import Store


def readiness(cfg: Config, store: Store, now: float) -> tuple[bool, str]:
    """Ready when the store is the one the stack opened, the listener is subscribed and a post
    succeeded recently; else the reason, with what the processes found out (a wrong dataset, say)."""
    vanished = store.vanished()
    if vanished:
        return False, vanished
    fresh = cfg.ping_interval_seconds + cfg.pong_timeout_seconds + 2
    if store.subscribed_since(fresh, now) is None:
        return False, _with_note("listener is not subscribed", store.note("listener"))
    max_age = cfg.ready_max_post_age_seconds or 3 * cfg.event_interval_seconds + cfg.post_timeout_seconds
    last_ok, _ = store.last_post()
    if last_ok is None:
        return False, _with_note("no successful post yet", store.note("sender"))
    if now - last_ok > max_age:
        reason = f"last successful post {now - last_ok:.0f}s ago (limit {max_age:g}s)"
        return False, _with_note(reason, store.note("sender"))
    return True, "ready"


def _with_note(reason: str, note: str | None) -> str:
    return f"{reason}: {note}" if note else reason

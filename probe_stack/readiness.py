"""The /readyz rule: is the probe able to tell the truth about the pipeline right now?"""

from __future__ import annotations

from shared.config import Config, Dataset
from shared.store import Store


def readiness(cfg: Config, store: Store, now: float) -> tuple[bool, str]:
    """Ready when the store is the one the stack opened and every dataset is ready; else why.

    With one dataset the answer is its reason alone; with several, a summary line and then
    one line per dataset (`name: ready`, or its reason).
    """
    vanished = store.vanished()
    if vanished:
        return False, vanished
    states = [(ds.name, *dataset_readiness(cfg, ds, store, now)) for ds in cfg.datasets]
    if len(states) == 1:
        return states[0][1], states[0][2]
    waiting = [name for name, ok, _ in states if not ok]
    head = "ready" if not waiting else f"not ready: {len(waiting)} of {len(states)} datasets"
    return not waiting, "\n".join([head, *(f"{name}: {reason}" for name, _, reason in states)])


def dataset_readiness(cfg: Config, ds: Dataset, store: Store, now: float) -> tuple[bool, str]:
    """Ready when its subscription is open and a post succeeded recently; else the reason, with
    what the processes found out (a wrong dataset, say)."""
    fresh = cfg.subscription_fresh_seconds()
    if store.subscribed_since(ds.name, fresh, now) is None:
        return False, _with_note("listener is not subscribed", store.note(f"listener:{ds.name}"))
    max_age = cfg.ready_max_post_age_seconds or 3 * ds.interval_seconds + cfg.post_timeout_seconds
    last_ok, _ = store.last_post(ds.name)
    if last_ok is None:
        return False, _with_note("no successful post yet", store.note(f"sender:{ds.name}"))
    if now - last_ok > max_age:
        reason = f"last successful post {now - last_ok:.0f}s ago (limit {max_age:g}s)"
        return False, _with_note(reason, store.note(f"sender:{ds.name}"))
    return True, "ready"


def _with_note(reason: str, note: str | None) -> str:
    return f"{reason}: {note}" if note else reason

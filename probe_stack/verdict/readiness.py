"""The /readyz rule: is the probe able to tell the truth about the pipeline right now?"""

from __future__ import annotations

import time

from probe_stack.verdict.rule import Facts, judge
from shared.config import Config, Dataset
from shared.store import NoteOwner, Store, note_key


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
    what the processes found out (a wrong dataset, say). The rule is verdict.judge's."""
    verdict = judge(readiness_facts(cfg, ds, store, now))
    return verdict.ready, "ready" if verdict.ready else verdict.text


def readiness_facts(cfg: Config, ds: Dataset, store: Store, now: float) -> Facts:
    """The facts readiness needs (the status page adds loss, latency and arrivals to them)."""
    # Fresh by the monotonic clock where the store has it: a wall clock stepped back must not
    # make a stale heartbeat look fresh.
    subscribed = store.subscribed_since(ds.name, cfg.subscription_fresh_seconds(), now, time.monotonic()) is not None
    last_ok, _ = store.last_post(ds.name) if subscribed else (None, None)
    return Facts(
        subscribed=subscribed,
        last_ok_post_age=None if last_ok is None else now - last_ok,
        max_post_age=cfg.ready_max_post_age_seconds or 3 * ds.interval_seconds + cfg.post_timeout_seconds,
        listener_note=None if subscribed else store.note(note_key(NoteOwner.LISTENER, ds.name)),
        sender_note=store.note(note_key(NoteOwner.SENDER, ds.name)) if subscribed else None,
    )

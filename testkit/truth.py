"""The state the emulator's truth implies: what the probe's store should say of each event.

The truth records what the platform did with every event (accepted, dropped, held, written to
subscribers); the probe only sees the outside of it. Tests and the bench compare the two.
"""

from __future__ import annotations


def implied_state(event: dict | None) -> tuple[str, int]:
    """(state, receive count) the truth implies for an event, if the listener never looked away.

    `event` is the truth's record of the event, or None when the collector never accepted it.
    """
    if event is None:
        return "post_failed", 0
    if event["fate"] in ("dropped", "held"):
        return "lost", 0
    return "received", len(event["writes"])

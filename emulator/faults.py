"""Fault settings of the emulator and the random choices they drive.

Settings are one dataclass so that flags at start, `PUT /_emulator/faults` at run
time and `GET /_emulator/faults` all speak the same names. Every random choice
comes from one seeded generator, so a run with a seed is repeatable.
"""

from __future__ import annotations

import difflib
import math
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal")
RETRIABLE_STATUSES = (429, 500, 502, 503, 504)


class FaultError(ValueError):
    """A fault setting is invalid; str() names it."""


@dataclass(frozen=True)
class Faults:
    # delivery delay, milliseconds
    delay_distribution: str = "fixed"
    delay_ms: float = 0.0  # fixed value, or centre (uniform/normal), or median (lognormal)
    delay_spread_ms: float = 0.0  # uniform: half width; normal: standard deviation
    delay_sigma: float = 0.5  # lognormal: shape (sigma of the log)
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0  # chance an event is written twice
    duplicate_gap_ms: float = 5.0  # how long after the first copy the second one goes out
    reorder_rate: float = 0.0  # chance an event is held back so that later ones overtake it
    reorder_ms: float = 50.0
    corrupt_rate: float = 0.0  # chance a delivered copy is altered (a character of its padding, or a field added)
    # collector
    collector_error_rate: float = 0.0
    collector_error_statuses: tuple[int, ...] = (503,)
    collector_error_written_rate: float = 0.0  # chance an injected error comes after the write
    collector_delay_ms: float = 0.0
    # token endpoint
    token_down: bool = False
    token_lifetime_seconds: float = 300.0
    # websocket
    paused: bool = False  # an outage: accepted events are held, delivered on resume
    half_open: bool = False  # no pongs and no frames, the socket stays open
    refuse_connections: bool = False  # handshakes fail with 500
    # One location's fault: handshakes with ?subscriber=<this> fail with 500 and its open
    # subscriptions are closed (1011); others are untouched. Empty: none.
    refuse_subscriber: str = ""
    close_every_seconds: float = 0.0  # force-close every connection this often (0 = never)
    close_code: int = 1001
    seed: int | None = None

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["collector_error_statuses"] = list(self.collector_error_statuses)
        return doc

    def refuses(self, tag: str) -> bool:
        """Whether a subscription handshake (of location `tag`, empty: unnamed) fails with 500."""
        return self.refuse_connections or (bool(tag) and tag == self.refuse_subscriber)

    def updated(self, changes: dict[str, Any]) -> Faults:
        """A copy with `changes` applied and validated; FaultError names a bad key."""
        known = {f.name: f for f in fields(self)}
        clean: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise FaultError(f"unknown fault setting {key!r}; {hint}known: {', '.join(sorted(known))}")
            current = getattr(self, key)
            try:
                value = _coerce(key, value, current)
                if isinstance(current, float) and not (math.isfinite(value) and value >= 0):
                    raise ValueError
            except (TypeError, ValueError):
                raise FaultError(f"fault setting {key!r}: {value!r} is not a valid {type(current).__name__}") from None
            clean[key] = value
        result = replace(self, **clean)
        _check(result)
        return result


RATES = (
    "drop_rate",
    "duplicate_rate",
    "reorder_rate",
    "corrupt_rate",
    "collector_error_rate",
    "collector_error_written_rate",
)


def _coerce(key: str, value: Any, current: Any) -> Any:
    """`value` as the type of the setting `key` (whose value now is `current`); TypeError or ValueError.
    (A float's range is checked by the caller, which names the value as converted.)"""
    if key == "collector_error_statuses":
        return tuple(int(v) for v in (value if isinstance(value, list | tuple) else [value]))
    if key == "seed":
        return None if value is None else int(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(current, float):
        return float(value)
    if isinstance(current, int):
        return int(value)
    return str(value)


def _check(faults: Faults) -> None:
    """The rules across settings; FaultError names the first one broken."""
    for key in RATES:
        if not 0.0 <= getattr(faults, key) <= 1.0:
            raise FaultError(f"fault setting {key!r} must be between 0 and 1")
    if faults.delay_distribution not in DISTRIBUTIONS:
        raise FaultError(f"fault setting 'delay_distribution' must be one of {', '.join(DISTRIBUTIONS)}")
    bad = [s for s in faults.collector_error_statuses if s not in RETRIABLE_STATUSES]
    if bad or not faults.collector_error_statuses:
        raise FaultError(f"fault setting 'collector_error_statuses' must be among {RETRIABLE_STATUSES}")
    if faults.token_lifetime_seconds < 1:
        raise FaultError("fault setting 'token_lifetime_seconds' must be at least 1")


class Dice:
    """The emulator's only source of randomness."""

    def __init__(self, seed: int | None) -> None:
        self.rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self.rng.seed(seed)

    def chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def delay_ms(self, f: Faults) -> float:
        if f.delay_distribution == "uniform":
            value = self.rng.uniform(f.delay_ms - f.delay_spread_ms, f.delay_ms + f.delay_spread_ms)
        elif f.delay_distribution == "normal":
            value = self.rng.gauss(f.delay_ms, f.delay_spread_ms)
        elif f.delay_distribution == "lognormal":
            value = self.rng.lognormvariate(math.log(max(f.delay_ms, 1e-3)), f.delay_sigma)
        else:
            value = f.delay_ms
        return max(0.0, value)

    def status(self, f: Faults) -> int:
        return self.rng.choice(f.collector_error_statuses)

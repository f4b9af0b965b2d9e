"""Is the connection alive? Ping, pong and heartbeat bookkeeping, as pure logic.

A connection is presumed dead when a ping goes unanswered for the pong timeout.
Its subscription interval must end at the last *proof* of life (a frame or a
pong), never later, so that the probe never claims it was listening while the
connection was already dead. Times: `mono` is time.monotonic(), `wall` is time.time().
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Due(Enum):
    """What the listening loop must do next."""

    NOTHING = "nothing"
    DEAD = "dead"  # a ping went unanswered for the pong timeout
    PING = "ping"
    HEARTBEAT = "heartbeat"  # write the last proof of life to the store


@dataclass
class Liveness:
    ping_interval: float
    pong_timeout: float
    heartbeat_every: float
    last_alive: float  # wall time of the last proof of life
    last_ping: float  # mono time of the last ping sent
    last_heartbeat: float  # mono time of the last heartbeat written
    ping_sent_at: float | None = None  # mono time of the unanswered ping
    last_alive_mono: float | None = None  # mono time of the last proof of life

    @classmethod
    def opened(cls, ping_interval: float, pong_timeout: float, heartbeat_every: float, wall: float, mono: float):
        """A connection that has just opened: the handshake is its first proof of life."""
        return cls(ping_interval, pong_timeout, heartbeat_every, wall, mono, mono, last_alive_mono=mono)

    def due(self, mono: float) -> Due:
        """The most urgent thing to do at `mono`; the caller reports back what it did."""
        if self.ping_sent_at is not None and mono - self.ping_sent_at > self.pong_timeout:
            return Due.DEAD
        if self.ping_sent_at is None and mono - self.last_ping >= self.ping_interval:
            return Due.PING
        if mono - self.last_heartbeat >= self.heartbeat_every:
            return Due.HEARTBEAT
        return Due.NOTHING

    def wait_for(self, mono: float) -> float:
        """Seconds from `mono` until something is due (a ping, its pong deadline, a heartbeat):
        how long the loop may block on the socket without missing it."""
        if self.ping_sent_at is not None:
            next_check = self.ping_sent_at + self.pong_timeout
        else:
            next_check = self.last_ping + self.ping_interval
        return max(0.0, min(next_check, self.last_heartbeat + self.heartbeat_every) - mono)

    def pinged(self, mono: float) -> None:
        self.last_ping = self.ping_sent_at = mono

    def heartbeat_written(self, mono: float) -> None:
        self.last_heartbeat = mono

    def frame(self, wall: float, mono: float | None = None) -> None:
        """A data frame arrived: proof of life, but it does not answer a ping."""
        self.last_alive = wall
        if mono is not None:
            self.last_alive_mono = mono

    def pong(self, wall: float, mono: float | None = None) -> None:
        self.last_alive = wall
        if mono is not None:
            self.last_alive_mono = mono
        self.ping_sent_at = None

"""How much of the listener's CPU one subscription may spend on frames that are not the probe's events.

Our own events arrive at most at our own send rate; everything beyond them (malformed frames,
forgeries, other instances' events, fragments) is noise a peer controls. Left alone, one
flooding dataset kept its thread busy for good, and every other dataset's thread then waited
for the interpreter lock at each of its many blocking calls per event (p50 2.5 -> 55 ms).
A token bucket of CPU seconds, as pure logic: over budget, the subscription stops reading
for a while, and TCP holds the flood back at its sender.
"""

from __future__ import annotations

from dataclasses import dataclass

NOISE_SHARE = 0.05  # of one core, per subscription
NOISE_BURST = 0.002  # CPU seconds in hand: a short burst of noise is never held back, a long one never runs


@dataclass
class Budget:
    share: float  # CPU seconds earned per second
    burst: float  # the most CPU seconds in hand
    balance: float
    at: float  # monotonic time of the last refill

    @classmethod
    def full(cls, mono: float, share: float = NOISE_SHARE, burst: float = NOISE_BURST) -> Budget:
        return cls(share, burst, burst, mono)

    def _refill(self, mono: float) -> None:
        if mono > self.at:
            self.balance = min(self.burst, self.balance + (mono - self.at) * self.share)
            self.at = mono

    def spend(self, cpu: float, mono: float) -> None:
        """`cpu` seconds went on noise."""
        self._refill(mono)
        self.balance -= max(0.0, cpu)

    def pause(self, mono: float) -> float:
        """Seconds to stop reading until the budget is back in credit (0: read on)."""
        self._refill(mono)
        return 0.0 if self.balance > -1e-9 else -self.balance / self.share  # no pause for rounding

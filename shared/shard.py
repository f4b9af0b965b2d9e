"""Which entries of the one shared datasets list a shard of a fleet watches (`PROBE_SHARD=i/n`).

The assignment is Prometheus's `hashmod`: the MD5 of the text, its last 8 bytes as a big-endian
integer, mod n. It is stable across processes, machines and Python versions (Python's own
hash() is salted per process), so every instance of a fleet computes the same split from the
same list, and a `hashmod` relabelling over the `dataset_id` gives the same numbers.

The text hashed is an entry's dataset id, not its name: two entries of one dataset id share one
subscription's stream, and split across shards each would see the other's events as a foreign
instance's. With one entry per dataset id (the usual list), the name defaults to the id anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

# A fleet of more than this many probes is a configuration mistake (a list holds at most 200 datasets).
MAX_SHARDS = 1000
_SHARD = re.compile(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


UNSHARDED = Shard(0, 1)


def parse(text: str) -> Shard:
    """`i/n` with 0 <= i < n <= MAX_SHARDS; "" is the unsharded instance (0/1). ValueError says why."""
    if not text.strip():
        return UNSHARDED
    match = _SHARD.fullmatch(text)
    if not match:
        raise ValueError(f"expected i/n, e.g. 0/3 (shard 0 of 3), got {text[:40]!r}")
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be 1 to {MAX_SHARDS}, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"the shard index must be 0 to {count - 1} (counting from 0), got {index}")
    return Shard(index, count)


def shard_of(key: str, count: int) -> int:
    """The shard (0 to count-1) that watches `key`: Prometheus's hashmod of it."""
    digest = hashlib.md5(key.encode("utf-8", errors="surrogatepass"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % count


def watched(keys: Iterable[str], shard: Shard) -> list[bool]:
    """For each key in order, whether `shard` watches it."""
    return [shard_of(key, shard.count) == shard.index for key in keys]

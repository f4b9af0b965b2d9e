"""Name resolution with a deadline.

getaddrinfo cannot be interrupted: a DNS server that never answers holds the calling thread
for the resolver's own timeouts and retries (20 s were seen against a 10 s connect budget),
and no socket exists yet for a watchdog to shut. So resolution runs on a small pool of
worker threads and the caller waits no longer than its deadline; a worker still waiting on
the resolver finishes in its own time. The pool bounds how many can hang at once.
"""

from __future__ import annotations

import socket
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")

AddrInfo = tuple


class ResolveTimeout(OSError):
    """No answer from name resolution within the deadline."""


def resolve(host: str, port: int, timeout: float | None, family: int = 0) -> list[AddrInfo]:
    """getaddrinfo(host, port) for a TCP stream, within `timeout` seconds in all (None: no limit).

    Raises ResolveTimeout when the deadline passes, socket.gaierror when the name does not resolve.
    """
    future: Future = _pool.submit(socket.getaddrinfo, host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        return future.result(timeout=None if timeout is None else max(0.0, timeout))
    except FutureTimeout:
        future.cancel()  # if still queued behind hung workers, it never runs
        raise ResolveTimeout(f"no answer from name resolution within {timeout:g}s") from None

"""Name resolution with a deadline: the one home of every bounded lookup.

getaddrinfo cannot be interrupted: a DNS server that never answers holds the calling thread
for the resolver's own timeouts and retries (20 s were seen against a 10 s connect budget),
and no socket exists yet for a watchdog to shut. So resolution runs on a small pool of
worker threads and the caller waits no longer than its deadline; a worker still waiting on
the resolver finishes in its own time. The pool bounds how many can hang at once: one pool
for the listener's subscriptions, the HTTP requests of http_deadline and the checks of the
settings alike. No requests here: the listener, which makes no HTTP request, imports this.
"""

from __future__ import annotations

import socket
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="resolve")

AddrInfo = tuple

LOOKUP_SECONDS = 5.0  # how long a name in the settings may take to resolve when they are checked


class ResolveTimeout(OSError):
    """No answer from name resolution within the deadline."""


def getaddrinfo_within(host: str, port: int, timeout: float | None, family: int = 0) -> list[AddrInfo]:
    """getaddrinfo(host, port) for a TCP stream, within `timeout` seconds in all (None: no limit).

    Raises ResolveTimeout when the deadline passes, socket.gaierror when the name does not resolve.
    """
    future: Future = _pool.submit(socket.getaddrinfo, host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        return future.result(timeout=None if timeout is None else max(0.0, timeout))
    except FutureTimeout:
        future.cancel()  # if still queued behind hung workers, it never runs
        raise ResolveTimeout(f"no answer from name resolution within {timeout:g}s") from None


def resolve(host: str, port: int, within: float | None, family: int = 0) -> list[str]:
    """The addresses of `host`, in the resolver's order, waited for at most `within` seconds.

    Raises socket.gaierror when the name does not resolve, or not in time.
    """
    try:
        infos = getaddrinfo_within(host, port, within, family)
    except ResolveTimeout:
        raise socket.gaierror(socket.EAI_AGAIN, "no answer from the resolver within the deadline") from None
    addresses: list[str] = []
    for *_, address in infos:
        if address[0] not in addresses:
            addresses.append(str(address[0]))
    return addresses

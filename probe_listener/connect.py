"""Opening one subscription within a deadline, every failure under its own reason.

The steps websocket-client takes in one call (resolve, connect, tunnel through a proxy the
environment names, TLS, handshake), taken one by one so that each failure has its own reason
and name resolution has a deadline (it has none of its own). No redirect is ever followed:
the URL carries the webhook token.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode, urlsplit

import websocket
from websocket._http import _ssl_socket, _tunnel
from websocket._url import get_proxy_info

from shared.config import Dataset
from shared.deadline import Watchdog, shut
from shared.resolve import ResolveTimeout, getaddrinfo_within

CONNECT_TIMEOUT = 10.0


class ConnectFailure(StrEnum):
    """Why a connection attempt failed (the `reason` label of probe_websocket_connect_failures)."""

    DNS = "dns"  # the host (or the proxy's) does not resolve, or resolution did not answer in time
    REFUSED = "refused"  # nothing listens there (or a host or network unreachable)
    TLS = "tls"  # the TLS handshake failed: certificate, name, protocol
    TIMEOUT = "timeout"  # no subscription within CONNECT_TIMEOUT in all
    REJECTED = "rejected"  # the handshake answered 401 or 403: the webhook token does not open the dataset
    HTTP_4XX = "http_4xx"  # another 4xx: no such dataset (404), a bad request (400)
    HTTP_5XX = "http_5xx"
    REDIRECT = "redirect"  # a 3xx: never followed (the URL carries the webhook token)
    ERROR = "error"  # anything else (a proxy's refusal, a protocol error)


def handshake_failure(status: int) -> ConnectFailure:
    """What a refused handshake's HTTP status says."""
    if status in (401, 403):
        return ConnectFailure.REJECTED
    if 300 <= status < 400:
        return ConnectFailure.REDIRECT
    if 400 <= status < 500:
        return ConnectFailure.HTTP_4XX
    if 500 <= status < 600:
        return ConnectFailure.HTTP_5XX
    return ConnectFailure.ERROR


class Failed(Exception):
    """A connection attempt that failed, with its reason and a detail for people (no secret in it)."""

    def __init__(self, reason: ConnectFailure, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def describe(exc: BaseException | None) -> str:
    """An exception as a short phrase: its strerror when it has one, never a URL (it may carry a token)."""
    if exc is None:
        return "unknown"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.split("?", 1)[0][:200]


def subscription_url(ds: Dataset) -> str:
    query = urlencode({"dataset_id": ds.id, "webhook_token": ds.webhook_token})
    return f"{ds.websocket_url}{'&' if '?' in ds.websocket_url else '?'}{query}"


def failure(exc: BaseException, fired: bool) -> Failed:
    """What a failed attempt counts as. `fired`: the deadline's watchdog shut the sockets, so
    whatever the cut made a step raise is a timeout (a name or a redirect keeps its own reason)."""
    if isinstance(exc, Failed):
        reason, detail = exc.reason, exc.detail
    else:
        reason, detail = ConnectFailure.ERROR, describe(exc)
    if fired and reason not in (ConnectFailure.DNS, ConnectFailure.REDIRECT):
        reason, detail = ConnectFailure.TIMEOUT, f"no subscription within {CONNECT_TIMEOUT:g}s"
    return Failed(reason, detail)


def problem(reason: ConnectFailure, detail: str, where: str, name: str, dataset_id: str) -> str:
    """A failure as /readyz and the log show it: host:port, as the sender names Keycloak's and the
    collector's (on a shared host the port says which service refused), never the URL (its token)."""
    text = f"{reason} ({where}): {detail}"
    if reason is ConnectFailure.REJECTED:
        text += f"; the webhook token of {name} does not open dataset {dataset_id}"
    elif reason is ConnectFailure.HTTP_4XX:
        text += f"; is dataset {dataset_id} known to the subscription?"
    return text


def open_within(ws: websocket.WebSocket, url: str, websocket_url: str) -> None:
    """Open the subscription `url` on `ws` within CONNECT_TIMEOUT in all (name resolution
    included); raises Failed, with what it opened closed."""
    sockets: list[socket.socket] = []
    dog = Watchdog(CONNECT_TIMEOUT, lambda: [shut(sock) for sock in [*sockets, ws.sock]])
    try:
        with dog:
            _open(ws, url, websocket_url, sockets, time.monotonic() + CONNECT_TIMEOUT)
        return
    except (Failed, OSError, websocket.WebSocketException) as exc:
        failed = failure(exc, dog.fired)
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.close()
    with contextlib.suppress(Exception):
        ws.close(timeout=0)
    raise failed


@dataclass(frozen=True)
class Route:
    """Where a subscription URL leads: its host, and the proxy the environment names for it."""

    host: str
    port: int
    secure: bool
    proxy_host: str | None
    proxy_port: int
    proxy_auth: tuple[str, str] | None

    @classmethod
    def of(cls, websocket_url: str) -> Route:
        parts = urlsplit(websocket_url)
        host, secure = parts.hostname or "", parts.scheme == "wss"
        proxy_host, proxy_port, proxy_auth = get_proxy_info(host, secure)
        return cls(host, parts.port or (443 if secure else 80), secure, proxy_host, int(proxy_port or 80), proxy_auth)

    @property
    def dial(self) -> tuple[str, int]:
        """The address the TCP connection goes to: the proxy's, if any."""
        return (self.proxy_host, self.proxy_port) if self.proxy_host else (self.host, self.port)


def _open(ws: websocket.WebSocket, url: str, websocket_url: str, sockets: list[socket.socket], deadline: float) -> None:
    route = Route.of(websocket_url)
    sock = _tcp(_resolve(*route.dial, deadline), sockets, deadline)
    sock = _secure(sock, route, sockets)
    try:
        # redirect_limit=0: the URL carries the webhook token, which no redirect target may see.
        ws.connect(url, socket=sock, timeout=max(0.001, deadline - time.monotonic()), redirect_limit=0)
    except websocket.WebSocketBadStatusException as exc:
        raise Failed(handshake_failure(exc.status_code), f"the handshake was answered {exc.status_code}") from None
    except websocket.WebSocketException as exc:
        if "Redirect" in str(exc):
            raise Failed(ConnectFailure.REDIRECT, "the server redirects the subscription; not followed") from None
        raise


def _resolve(host: str, port: int, deadline: float) -> list:
    try:
        return getaddrinfo_within(host, port, deadline - time.monotonic())
    except ResolveTimeout:
        raise Failed(ConnectFailure.DNS, f"no answer for {host} within {CONNECT_TIMEOUT:g}s") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise Failed(ConnectFailure.DNS, f"{host} does not resolve ({describe(exc)})") from None


def _tcp(addresses: list, sockets: list[socket.socket], deadline: float) -> socket.socket:
    refused: OSError | None = None
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sockets.append(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            if isinstance(exc, TimeoutError | socket.timeout):
                raise Failed(ConnectFailure.TIMEOUT, f"no TCP connection within {CONNECT_TIMEOUT:g}s") from None
            refused = exc
            sock.close()
    raise Failed(ConnectFailure.REFUSED, describe(refused) if refused else "no address")


def _secure(sock: socket.socket, route: Route, sockets: list[socket.socket]) -> socket.socket:
    """Through the proxy's tunnel, then TLS, as the route asks."""
    try:
        if route.proxy_host:
            sock = _tunnel(sock, route.host, route.port, route.proxy_auth)
        if route.secure:
            sock = _ssl_socket(sock, {}, route.host)
            sockets.append(sock)
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise Failed(ConnectFailure.TLS, describe(exc)) from None
    except websocket.WebSocketProxyException as exc:
        raise Failed(ConnectFailure.ERROR, f"the proxy {route.proxy_host} refused: {describe(exc)}") from None
    return sock

"""Small hostile peers on loopback, for what the honest emulator will not do: flood a websocket,
split a huge message into continuation frames, drip, lie about lengths, never answer, answer 401
to everything.

Used by tests and the bench alike (`python -m bench.hostile`). Each peer is a TCP server in the
caller's process, one thread per connection running a handler that owns the connection (it is
closed when the handler returns), every connection shut when the `with` block ends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

Handler = Callable[[socket.socket, threading.Event], None]
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CONT, BINARY, PING, PONG = 0x1, 0x0, 0x2, 0x9, 0xA


@dataclass
class Peer:
    port: int
    stopping: threading.Event
    connections: list[socket.socket]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/event-data-subscription"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve(handle: Handler) -> Iterator[Peer]:
    """Run `handle(conn, stopping)` for each connection to a free loopback port until the block ends.
    Handlers return once `stopping` is set (or their peer goes away)."""
    stopping = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    conns: list[socket.socket] = []

    def serve_one(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            handle(conn, stopping)

    def accept() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conns.append(conn)
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield Peer(listener.getsockname()[1], stopping, conns)
    finally:
        stopping.set()
        thread.join(2)
        listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def read_head(conn: socket.socket, limit: int = 65536) -> bytes:
    """The request head (and nothing of a body, unless it came in the same read)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def drip(conn: socket.socket, data: bytes, every: float, stopping: threading.Event) -> None:
    """Send `data` one byte at a time, `every` seconds apart, until done or stopping."""
    for i in range(len(data)):
        if stopping.wait(every):
            return
        conn.sendall(data[i : i + 1])


def accept_websocket(conn: socket.socket) -> bytes:
    """Read an upgrade request and answer 101; returns the request head."""
    head = read_head(conn)
    key = next(
        (
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        ),
        b"",
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return head


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One unmasked server frame."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes([first, n]) + payload
    if n < 65536:
        return bytes([first, 126]) + struct.pack("!H", n) + payload
    return bytes([first, 127]) + struct.pack("!Q", n) + payload


def flooding(make: Callable[[int], bytes]) -> Handler:
    """A subscription that pushes text frames `make(i)` as fast as the client takes them."""

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        accept_websocket(conn)
        conn.settimeout(1.0)
        i = 0
        batch = 64
        while not stopping.is_set():
            try:
                conn.sendall(b"".join(frame(TEXT, make(i + k)) for k in range(batch)))
            except TimeoutError:
                continue
            i += batch

    return handle


def forged_events(app_id: str, dataset: str) -> Callable[[int], bytes]:
    """Frames with the probe's app_id and made-up seqnos, sealed the old, unkeyed way."""

    def make(i: int) -> bytes:
        event = {"app_id": app_id, "seqno": i + 1, "time_sent": "2026-01-01T00:00:00.000000+00:00", "dataset": dataset}
        event["digest"] = "sha256:" + hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()
        return (json.dumps(event) + "\n").encode()

    return make


def fragmenting(total: int = 100_000_000, piece: int = 60_000) -> Handler:
    """A subscription that sends one `total`-byte text message as `piece`-byte continuation frames."""

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        accept_websocket(conn)
        chunk = b" " * piece
        sent = 0
        while sent < total and not stopping.is_set():
            opcode = TEXT if sent == 0 else CONT
            conn.sendall(frame(opcode, chunk, fin=sent + piece >= total))
            sent += piece

    return handle


def answering(status: int, body: bytes = b'{"message": "Unauthorized"}') -> Handler:
    """An HTTP server that answers every request with `status` (a collector that says 401, say)."""

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        conn.settimeout(1.0)
        while not stopping.is_set():
            try:
                head = read_head(conn)
            except TimeoutError:
                continue
            if not head:
                return
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            rest = head.split(b"\r\n\r\n", 1)[1]
            while len(rest) < length:
                more = conn.recv(65536)
                if not more:
                    return
                rest += more
            conn.sendall(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )

    return handle


def hanging(conn: socket.socket, stopping: threading.Event) -> None:
    """Accepts, reads, never answers."""
    while not stopping.wait(0.5):
        with contextlib.suppress(OSError):
            conn.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                if conn.recv(65536) == b"":
                    return

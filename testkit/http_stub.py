"""A small scripted HTTP server in the test process, for peers the emulator cannot play.

For peers that misbehave below HTTP (dripping bytes, lying about lengths), see `testkit.hostile`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"message": "Ok"}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0  # seconds before answering


Script = Callable[[Request], Reply]


@dataclass
class Stub:
    url: str
    requests: list[Request]


@contextmanager
def serve(script: Script) -> Iterator[Stub]:
    """Serve `script` on a free loopback port until the block ends."""
    seen: list[Request] = []

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, dict(self.headers), self.rfile.read(length))
            seen.append(request)
            reply = script(request)
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:  # the client gave up first
                pass

        do_GET = do_POST = _handle

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Stub(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()


def sequence(*replies: Reply) -> Script:
    """Answer with each reply in turn, then keep answering the last."""
    remaining = list(replies)

    def script(_: Request) -> Reply:
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return script

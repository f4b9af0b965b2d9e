"""A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol with websocket-client.

Small on purpose: load a page, record every request it makes and every console message or
error, evaluate expressions, take a screenshot. No new dependency.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from tests.helpers import Proc, start, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1200,1400",
)


@dataclass
class Page:
    ws: websocket.WebSocket
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # console errors, exceptions, CSP reports
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def call(self, method: str, **params: Any) -> dict:
        """Send a command and wait for its answer, recording the events that arrive meanwhile."""
        ident = next(self._ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict) -> str | None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            self.problems.append(f"console {params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            self.problems.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
            self.problems.append(f"log: {params['entry'].get('text')}")
        return method

    def load(self, url: str, timeout: float = 30) -> None:
        """Navigate and wait for the load event (the page's own refresh is seconds later)."""
        self.ws.settimeout(timeout)
        self.call("Page.navigate", url=url)
        while self._event(json.loads(self.ws.recv())) != "Page.loadEventFired":
            pass

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(png)
        return png


class Browser:
    def __init__(self, tmp: Path) -> None:
        if CHROMIUM is None:
            pytest.fail("Chromium is required (Debian: apt-get install chromium); `make test-deps` installs it")
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp))
        self.proc: Proc = start(
            [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"], tmp / "chromium.log"
        )
        port_file = self.profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 60, "Chromium's DevTools port")
        self.port = int(port_file.read_text().split()[0])

    def page(self) -> Page:
        target = requests.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=10).json()
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        page = Page(ws)
        for domain in ("Page", "Runtime", "Network", "Log"):
            page.call(f"{domain}.enable")
        return page

    def close(self) -> None:
        self.proc.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


def png_colours(png: bytes, limit: int = 64) -> int:
    """How many distinct pixel values an 8-bit RGB(A) PNG has (up to `limit`): a blank page has one."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, [], b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = data
        elif kind == b"IDAT":
            chunks.append(data)
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    previous = bytearray(stride)
    seen: set[bytes] = set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        previous = line
        if row % 7 == 0:  # every seventh row is plenty to tell a page from a blank one
            seen.update(bytes(line[i : i + bpp]) for i in range(0, stride, bpp * 3))
            if len(seen) >= limit:
                return limit
    return len(seen)

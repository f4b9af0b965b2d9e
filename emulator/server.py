"""The emulator's HTTP and websocket server: token endpoint, collector, subscription.

It answers the platform contract (docs/platform.md), injects the faults of `Faults`, and
records the ground truth of every accepted event (truth.py), so that tests and benchmarks
judge the probe against what really happened, not against the probe's own view. Its
controls (`/_emulator/...`) are in controls.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from emulator.collector import Refusal, events_of
from emulator.controls import Controls
from emulator.faults import Dice, Faults
from emulator.tokens import TokenInvalid, TokenIssuer, token_answer
from emulator.truth import Record, Subscriber
from shared.contract import (
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    MAX_CLIENT_FRAME,
    MAX_REQUEST_BYTES,
    REALM,
)

log = logging.getLogger("emulator")

# How long a stop waits for requests in progress (a post held by `collector_delay_ms`, say)
# before they are cancelled: a SIGTERM ends the emulator within about this, not aiohttp's 60 s.
SHUTDOWN_SECONDS = 0.25
BEARER = re.compile(r"^(b|B)earer [-0-9a-zA-Z._]*$")


@dataclass
class Settings:
    realm: str = REALM
    client_id: str = LOCAL_CLIENT_ID
    client_secret: str = LOCAL_CLIENT_SECRET
    datasets: dict[str, set[str]] = field(default_factory=lambda: {"probe-dataset": {"1"}})
    webhook_tokens: dict[str, str] = field(default_factory=dict)  # dataset -> token
    idle_close_seconds: float = 600.0
    collector_auth: bool = True  # off: a collector that needs no token (the probe's AUTH_ENABLED=false)
    max_connection_seconds: float = 7200.0
    # Required (as `Authorization: Bearer ...`) by every /_emulator/ control but health; empty: none
    # (the local demo's default: then any local user can change faults and inject frames).
    control_token: str = ""


class Emulator:
    def __init__(self, settings: Settings, faults: Faults) -> None:
        self.settings = settings
        self.faults = faults
        self.dice = Dice(faults.seed)
        self.issuer = TokenIssuer(issuer=f"emulator/realms/{settings.realm}")
        self.records: list[Record] = []
        self.subscribers: dict[int, Subscriber] = {}
        self.history: list[Subscriber] = []
        self.held: list[tuple[Record, str]] = []
        # Faults of one dataset, where they differ from the emulator-wide ones (PUT ...?dataset=).
        self.dataset_faults: dict[str, Faults] = {}
        self._ids = itertools.count(1)
        self._closer: asyncio.Task | None = None
        self._stopping = asyncio.Event()  # set when the server stops: held posts end at once

    # ---- app ----

    def app(self) -> web.Application:
        controls = Controls(self)
        app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1, middlewares=[controls.auth])
        realm = self.settings.realm
        app.router.add_post(f"/auth/realms/{realm}/protocol/openid-connect/token", self.token)
        app.router.add_post("/event-collector/event/{dataset}/{version}", self.collect)
        app.router.add_post("/event-collector/events/{dataset}/{version}", self.collect)
        app.router.add_get("/event-data-subscription", self.subscribe)
        controls.add_routes(app)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        return app

    async def _start(self, _: web.Application) -> None:
        self._closer = asyncio.create_task(self._close_periodically())

    async def _stop(self, _: web.Application) -> None:
        self._stopping.set()
        if self._closer:
            self._closer.cancel()
        await self.close_all(1001, "emulator shutting down")

    def faults_for(self, dataset: str | None) -> Faults:
        return self.dataset_faults.get(dataset or "", self.faults)

    # ---- token endpoint ----

    async def token(self, request: web.Request) -> web.Response:
        if self.faults.token_down:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        settings = self.settings
        answer, status = token_answer(
            await request.post(),
            settings.client_id,
            settings.client_secret,
            self.issuer,
            self.faults.token_lifetime_seconds,
        )
        return web.json_response(answer, status=status)

    # ---- collector ----

    def _authorized(self, header: str | None) -> bool:
        if not header or not BEARER.match(header):
            return False
        try:
            self.issuer.verify(header.split(" ", 1)[1])
        except TokenInvalid:
            return False
        return True

    async def collect(self, request: web.Request) -> web.Response:
        dataset, version = request.match_info["dataset"], request.match_info["version"]
        faults = self.faults_for(dataset)
        if faults.collector_delay_ms and await self._held_until_stop(faults.collector_delay_ms):
            return Refusal(503, "Service Unavailable").response()
        if self.settings.collector_auth and not self._authorized(request.headers.get("Authorization")):
            return Refusal(401, "Unauthorized").response()
        if version not in self.settings.datasets.get(dataset, set()):
            return Refusal(404, f"Dataset with id:{dataset} and version:{version} does not exist").response()
        events = events_of(await request.read())
        if isinstance(events, Refusal):
            return events.response()
        trace_header = request.headers.get("X-Amzn-Trace-Id")
        if self.dice.chance(faults.collector_error_rate):
            status = self.dice.status(faults)
            if self.dice.chance(faults.collector_error_written_rate):
                self._accept(dataset, version, events, trace_header)
            return Refusal(status, "Too Many Requests" if status == 429 else "Internal server error").response()
        self._accept(dataset, version, events, trace_header)
        return web.json_response({"message": "Ok"})

    async def _held_until_stop(self, delay_ms: float) -> bool:
        """Hold a post `delay_ms`; True when a stop ended the hold (a held post never holds up
        the emulator's exit)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), delay_ms / 1000)
        except TimeoutError:
            return False
        return True

    def _accept(self, dataset: str, version: str, events: list[dict], trace_header: str | None = None) -> None:
        loop = asyncio.get_running_loop()
        now = time.time()
        faults = self.faults_for(dataset)
        for event in events:
            record = Record(len(self.records), dataset, version, event, now, trace_header)
            self.records.append(record)
            if self.dice.chance(faults.drop_rate):
                record.fate = "dropped"
                continue
            copies = 2 if self.dice.chance(faults.duplicate_rate) else 1
            text = json.dumps(event) + "\n"
            base = self.dice.delay_ms(faults)
            if self.dice.chance(faults.reorder_rate):
                base += faults.reorder_ms
            for copy in range(copies):
                delay = base + copy * faults.duplicate_gap_ms
                record.delays_ms.append(round(delay, 3))
                sent = text
                if self.dice.chance(faults.corrupt_rate):
                    record.corrupted.append(copy)
                    sent = json.dumps(self._altered(event)) + "\n"
                loop.call_later(delay / 1000, self.deliver, record, sent)

    def _altered(self, event: dict) -> dict:
        """A copy changed on the way: one character of its padding, or else a field added."""
        copy = dict(event)
        padding = copy.get("padding")
        if isinstance(padding, str) and padding:
            at = self.dice.rng.randrange(len(padding))
            copy["padding"] = padding[:at] + ("0" if padding[at] != "0" else "1") + padding[at + 1 :]
        else:
            copy["emulator_altered"] = True
        return copy

    def deliver(self, record: Record, text: str) -> None:
        if self.faults_for(record.dataset).paused:
            record.fate = "held"
            self.held.append((record, text))
            return
        record.fate = "delivered"
        for sub in list(self.subscribers.values()):
            if sub.dataset == record.dataset:
                sub.queue.put_nowait((record, text))

    # ---- websocket subscription ----

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        dataset = request.query.get("dataset_id")
        tag = request.query.get("subscriber", "")
        refused = self._refuse_subscription(
            dataset, request.query.get("webhook_token"), request.headers.get("Authorization"), tag
        )
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(autoping=False, max_msg_size=MAX_CLIENT_FRAME)
        # Registered before the handshake completes, so that nothing published after
        # the client sees the 101 can miss it.
        sub = Subscriber(next(self._ids), dataset, time.time(), tag)
        self.subscribers[sub.id] = sub
        self.history.append(sub)
        writer = asyncio.create_task(self._write_loop(sub))
        try:
            await ws.prepare(request)
            sub.ws = ws
            sub.connected_at = time.time()
            await self._read_loop(sub, ws)
        finally:
            self.subscribers.pop(sub.id, None)
            writer.cancel()
            sub.closed_at = time.time()
            if sub.close_code is None:  # set already when the emulator closed it
                sub.close_code = ws.close_code
            self._skip_queued(sub, "connection closed")
        return ws

    def _refuse_subscription(
        self, dataset: str | None, token: str | None, header: str | None, tag: str
    ) -> web.Response | None:
        """The handshake's refusal, if the faults or the credentials call for one."""
        faults = self.faults_for(dataset)
        if faults.refuses(tag):
            return Refusal(500, "Internal server error").response()
        if not dataset or (not token and not header):
            return Refusal(400, "Bad Request").response()
        if token is None and not self._authorized(header):
            return Refusal(401, "Unauthorized").response()
        if token is not None and self.settings.webhook_tokens.get(dataset) != token:
            return Refusal(403, "Forbidden").response()
        return None

    async def _read_loop(self, sub: Subscriber, ws: web.WebSocketResponse) -> None:
        """Answer pings (unless half-open) and ignore everything else the client says."""
        deadline = sub.connected_at + self.settings.max_connection_seconds
        while not ws.closed:
            timeout = min(self.settings.idle_close_seconds, deadline - time.time())
            try:
                if timeout <= 0:
                    raise TimeoutError
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:  # idle too long, or the connection's maximum age reached
                sub.close_code = 1001
                await ws.close(code=1001, message=b"Going away")
                break
            if msg.type == WSMsgType.PING:
                if not self.faults_for(sub.dataset).half_open:
                    await ws.pong(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break

    async def _write_loop(self, sub: Subscriber) -> None:
        while True:
            record, text = await sub.queue.get()
            ws = sub.ws
            if ws is None:  # handshake still in flight: wait for it, keep the order
                while sub.ws is None:
                    await asyncio.sleep(0.001)
                ws = sub.ws
            if self.faults_for(sub.dataset).half_open:
                record.skipped.append((sub.id, "half-open"))
                continue
            try:
                await ws.send_str(text)
                record.writes.append((sub.id, time.time()))
            except (ConnectionError, RuntimeError):
                record.skipped.append((sub.id, "connection closed"))

    def _skip_queued(self, sub: Subscriber, why: str) -> None:
        while not sub.queue.empty():
            record, _ = sub.queue.get_nowait()
            record.skipped.append((sub.id, why))

    async def close_all(self, code: int, reason: str, dataset: str | None = None, tag: str | None = None) -> int:
        subs = [
            s
            for s in self.subscribers.values()
            if s.ws is not None and dataset in (None, s.dataset) and tag in (None, s.tag)
        ]
        for sub in subs:
            sub.close_code = code
            await sub.ws.close(code=code, message=reason.encode())
        return len(subs)

    async def _close_periodically(self) -> None:
        while True:
            every = self.faults.close_every_seconds
            await asyncio.sleep(every if every > 0 else 0.2)
            if every > 0 and self.faults.close_every_seconds > 0:
                await self.close_all(self.faults.close_code, "Going away")

"""The emulator's HTTP and websocket server: token endpoint, collector, subscription, controls.

It answers the platform contract (docs/platform.md), injects the faults of `Faults`, and
records the ground truth of every accepted event, so that tests and benchmarks
judge the probe against what really happened, not against the probe's own view.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import itertools
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from emulator.faults import Dice, FaultError, Faults
from emulator.tokens import TokenInvalid, TokenIssuer
from shared.contract import (
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    MAX_CLIENT_FRAME,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_REQUEST,
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


@dataclass
class Record:
    """Ground truth of one accepted event."""

    index: int
    dataset: str
    version: str
    event: dict
    accepted_at: float
    trace_header: str | None = None  # the X-Amzn-Trace-Id the post carried, as the platform would see it
    fate: str = "pending"  # delivered / dropped / held (paused, not yet delivered)
    delays_ms: list[float] = field(default_factory=list)  # one per copy
    writes: list[tuple[int, float]] = field(default_factory=list)  # (subscriber id, time)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (subscriber id, why not written)
    corrupted: list[int] = field(default_factory=list)  # which copies (0, 1) went out altered

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "dataset": self.dataset,
            "version": self.version,
            "app_id": self.event.get("app_id"),
            "seqno": self.event.get("seqno"),
            "accepted_at": self.accepted_at,
            "trace_header": self.trace_header,
            "fate": self.fate,
            "copies": len(self.delays_ms) if self.fate != "dropped" else 0,
            "delays_ms": self.delays_ms,
            "writes": [{"subscriber": s, "at": t} for s, t in self.writes],
            "skipped": [{"subscriber": s, "why": w} for s, w in self.skipped],
            "corrupted_copies": self.corrupted,
        }


@dataclass
class Subscriber:
    id: int
    dataset: str
    connected_at: float
    tag: str = ""  # ?subscriber=: which location it is, for refuse_subscriber
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    ws: web.WebSocketResponse | None = None
    closed_at: float | None = None
    close_code: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "connected_at": self.connected_at,
            "closed_at": self.closed_at,
            "close_code": self.close_code,
        }


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

    @web.middleware
    async def _control_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The controls change what the probe sees (faults, injected frames, closes): with a
        control token set, only its holder may use them."""
        token = self.settings.control_token
        if token and request.path.startswith("/_emulator/") and request.path != "/_emulator/health":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return web.json_response({"error": "the emulator's controls need its control token"}, status=401)
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES + 1, middlewares=[self._control_auth])
        realm = self.settings.realm
        app.router.add_post(f"/auth/realms/{realm}/protocol/openid-connect/token", self.token)
        app.router.add_post("/event-collector/event/{dataset}/{version}", self.collect)
        app.router.add_post("/event-collector/events/{dataset}/{version}", self.collect)
        app.router.add_get("/event-data-subscription", self.subscribe)
        app.router.add_get("/_emulator/faults", self.get_faults)
        app.router.add_put("/_emulator/faults", self.put_faults)
        app.router.add_get("/_emulator/truth", self.truth)
        app.router.add_post("/_emulator/reset", self.reset)
        app.router.add_post("/_emulator/inject", self.inject)
        app.router.add_post("/_emulator/close", self.close_now)
        app.router.add_post("/_emulator/revoke-tokens", self.revoke_tokens)
        app.router.add_get("/_emulator/health", self.health)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        return app

    async def _start(self, _: web.Application) -> None:
        self._closer = asyncio.create_task(self._close_periodically())

    async def _stop(self, _: web.Application) -> None:
        self._stopping.set()
        if self._closer:
            self._closer.cancel()
        await self._close_all(1001, "emulator shutting down")

    def faults_for(self, dataset: str | None) -> Faults:
        return self.dataset_faults.get(dataset or "", self.faults)

    # ---- token endpoint ----

    async def token(self, request: web.Request) -> web.Response:
        if self.faults.token_down:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}, status=400
            )
        if form.get("client_id") != self.settings.client_id or form.get("client_secret") != (
            self.settings.client_secret
        ):
            return web.json_response(
                {
                    "error": "unauthorized_client",
                    "error_description": "Invalid client or Invalid client credentials",
                },
                status=401,
            )
        token, expires_in = self.issuer.issue(self.settings.client_id, self.faults.token_lifetime_seconds)
        return web.json_response(
            {
                "access_token": token,
                "expires_in": expires_in,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "openid profile email",
            }
        )

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
        faults = self.faults_for(request.match_info["dataset"])
        if faults.collector_delay_ms:
            try:  # a stop ends the hold at once: a held post never holds up the emulator's exit
                await asyncio.wait_for(self._stopping.wait(), faults.collector_delay_ms / 1000)
                return web.json_response({"message": "Service Unavailable"}, status=503)
            except TimeoutError:
                pass
        if self.settings.collector_auth and not self._authorized(request.headers.get("Authorization")):
            return web.json_response({"message": "Unauthorized"}, status=401)
        dataset, version = request.match_info["dataset"], request.match_info["version"]
        if version not in self.settings.datasets.get(dataset, set()):
            return web.json_response(
                {"message": f"Dataset with id:{dataset} and version:{version} does not exist"}, status=404
            )
        body = await request.read()
        if len(body) > MAX_REQUEST_BYTES:
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"message": "Body is not a valid JSON document"}, status=400)
        events = doc if isinstance(doc, list) else [doc]
        if not events or not all(isinstance(e, dict) for e in events):
            return web.json_response({"message": "JSON document does not conform to the given schema"}, status=400)
        if len(events) > MAX_EVENTS_PER_REQUEST or any(len(json.dumps(e)) > MAX_EVENT_BYTES for e in events):
            return web.json_response({"message": "Request Entity Too Large"}, status=413)
        if self.dice.chance(faults.collector_error_rate):
            status = self.dice.status(faults)
            if self.dice.chance(faults.collector_error_written_rate):
                self._accept(dataset, version, events, request.headers.get("X-Amzn-Trace-Id"))
            message = "Too Many Requests" if status == 429 else "Internal server error"
            return web.json_response({"message": message}, status=status)
        self._accept(dataset, version, events, request.headers.get("X-Amzn-Trace-Id"))
        return web.json_response({"message": "Ok"})

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
                loop.call_later(delay / 1000, self._deliver, record, sent)

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

    def _deliver(self, record: Record, text: str) -> None:
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
        token = request.query.get("webhook_token")
        header = request.headers.get("Authorization")
        tag = request.query.get("subscriber", "")
        faults = self.faults_for(dataset)
        if faults.refuse_connections or (tag and tag == faults.refuse_subscriber):
            return web.json_response({"message": "Internal server error"}, status=500)
        if not dataset or (not token and not header):
            return web.json_response({"message": "Bad Request"}, status=400)
        if token is None and not self._authorized(header):
            return web.json_response({"message": "Unauthorized"}, status=401)
        if token is not None and self.settings.webhook_tokens.get(dataset) != token:
            return web.json_response({"message": "Forbidden"}, status=403)
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

    async def _close_all(self, code: int, reason: str, dataset: str | None = None, tag: str | None = None) -> int:
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
                await self._close_all(self.faults.close_code, "Going away")

    # ---- controls ----

    def _unknown_dataset(self, dataset: str | None) -> web.Response | None:
        """404 naming the datasets that exist, for `?dataset=` of none of them: faults set for a
        dataset nobody posts to would be a silent no-op, and a typo an outage that never happens."""
        if dataset is None or dataset in self.settings.datasets:
            return None
        known = ", ".join(sorted(self.settings.datasets))
        return web.json_response({"error": f"no dataset {dataset!r}; the datasets are: {known}"}, status=404)

    async def get_faults(self, request: web.Request) -> web.Response:
        dataset = request.query.get("dataset")
        return self._unknown_dataset(dataset) or web.json_response(self.faults_for(dataset).as_json())

    async def put_faults(self, request: web.Request) -> web.Response:
        """Change the faults of every dataset, or with ?dataset=ID of that one only."""
        dataset = request.query.get("dataset")
        unknown = self._unknown_dataset(dataset)
        if unknown is not None:
            return unknown
        before = self.faults_for(dataset)
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise FaultError("expected a JSON object of fault settings")
            faults = before.updated(changes)
        except (ValueError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if dataset is None:
            self.faults = faults
        else:
            self.dataset_faults[dataset] = faults
        if "seed" in changes:
            self.dice.reseed(faults.seed)
        if faults.refuse_subscriber and faults.refuse_subscriber != before.refuse_subscriber:
            await self._close_all(1011, "Internal error", dataset, faults.refuse_subscriber)
        if before.paused and not faults.paused:
            keep: list[tuple[Record, str]] = []
            release: list[tuple[Record, str]] = []
            for record, text in self.held:
                (keep if self.faults_for(record.dataset).paused else release).append((record, text))
            self.held = keep
            for record, text in release:
                self._deliver(record, text)
        log.info("faults updated%s: %s", f" for {dataset}" if dataset else "", changes)
        return web.json_response(faults.as_json())

    async def close_now(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        code = int(body.get("code", self.faults.close_code))
        closed = await self._close_all(code, str(body.get("reason", "Going away")), body.get("dataset"))
        return web.json_response({"closed": closed})

    async def revoke_tokens(self, _: web.Request) -> web.Response:
        """Rotate the signing key, as after a Keycloak key rotation: every issued token now gets 401."""
        self.issuer.rotate()
        return web.json_response({"ok": True})

    async def inject(self, request: web.Request) -> web.Response:
        """Send a raw frame (text or base64 binary) to every subscriber of a dataset, bypassing truth."""
        body = await request.json()
        dataset = body.get("dataset", next(iter(self.settings.datasets)))
        sent = 0
        for sub in list(self.subscribers.values()):
            if sub.dataset != dataset or sub.ws is None:
                continue
            try:
                if "binary_b64" in body:
                    await sub.ws.send_bytes(base64.b64decode(body["binary_b64"]))
                else:
                    await sub.ws.send_str(body["text"])
            except ConnectionError:  # the subscriber went away mid-frame (it may refuse large ones)
                continue
            sent += 1
        return web.json_response({"sent": sent})

    async def truth(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))
        dataset = request.query.get("dataset")
        events = [r.as_json() for r in self.records[since:] if dataset is None or r.dataset == dataset]
        return web.json_response(
            {
                "now": time.time(),
                "events": events,
                "subscribers": [s.as_json() for s in self.history],
                "next": len(self.records),
            }
        )

    async def reset(self, _: web.Request) -> web.Response:
        self.records.clear()
        self.held.clear()
        self.history = [s for s in self.history if s.closed_at is None]
        return web.json_response({"ok": True})

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"ok": True, "subscribers": len(self.subscribers), "events": len(self.records)})

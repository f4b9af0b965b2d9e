"""The emulator's controls (`/_emulator/...`): faults, truth, reset, injected frames, closes.

They change what the probe sees, so with a control token set only its holder may use them
(health excepted: a supervisor asks it). A module of its own: the platform's endpoints in
server.py answer the contract, these answer the tests, the bench and an operator.
"""

from __future__ import annotations

import base64
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from emulator.faults import Dice, FaultError, Faults
from emulator.tokens import TokenIssuer
from emulator.truth import Record, Subscriber

log = logging.getLogger("emulator")

HEALTH = "/_emulator/health"


def needs_token(path: str, token: str) -> bool:
    """Whether a request to `path` must show the control token (`token`, empty: none is set)."""
    return bool(token) and path.startswith("/_emulator/") and path != HEALTH


def released(
    held: list[tuple[Record, str]], paused: Callable[[str], bool]
) -> tuple[list[tuple[Record, str]], list[tuple[Record, str]]]:
    """The held copies split into (still held, to deliver now) by whether their dataset is `paused`."""
    keep: list[tuple[Record, str]] = []
    release: list[tuple[Record, str]] = []
    for record, text in held:
        (keep if paused(record.dataset) else release).append((record, text))
    return keep, release


class Emulated(Protocol):
    """What the controls change and read of the emulator (server.Emulator); a protocol, so that
    the server imports the controls and never the other way round."""

    settings: Any  # server.Settings: its datasets and control_token
    faults: Faults
    dataset_faults: dict[str, Faults]
    dice: Dice
    issuer: TokenIssuer
    records: list[Record]
    history: list[Subscriber]
    held: list[tuple[Record, str]]
    subscribers: dict[int, Subscriber]

    def faults_for(self, dataset: str | None) -> Faults: ...

    def deliver(self, record: Record, text: str) -> None: ...

    async def close_all(self, code: int, reason: str, dataset: str | None = None, tag: str | None = None) -> int: ...


class Controls:
    def __init__(self, emulator: Emulated) -> None:
        self.emu = emulator

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_emulator/faults", self.get_faults)
        app.router.add_put("/_emulator/faults", self.put_faults)
        app.router.add_get("/_emulator/truth", self.truth)
        app.router.add_post("/_emulator/reset", self.reset)
        app.router.add_post("/_emulator/inject", self.inject)
        app.router.add_post("/_emulator/close", self.close_now)
        app.router.add_post("/_emulator/revoke-tokens", self.revoke_tokens)
        app.router.add_get(HEALTH, self.health)

    @web.middleware
    async def auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """The controls change what the probe sees (faults, injected frames, closes): with a
        control token set, only its holder may use them."""
        token = self.emu.settings.control_token
        if needs_token(request.path, token):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return web.json_response({"error": "the emulator's controls need its control token"}, status=401)
        return await handler(request)

    def _unknown_dataset(self, dataset: str | None) -> web.Response | None:
        """404 naming the datasets that exist, for `?dataset=` of none of them: faults set for a
        dataset nobody posts to would be a silent no-op, and a typo an outage that never happens."""
        if dataset is None or dataset in self.emu.settings.datasets:
            return None
        known = ", ".join(sorted(self.emu.settings.datasets))
        return web.json_response({"error": f"no dataset {dataset!r}; the datasets are: {known}"}, status=404)

    async def get_faults(self, request: web.Request) -> web.Response:
        dataset = request.query.get("dataset")
        return self._unknown_dataset(dataset) or web.json_response(self.emu.faults_for(dataset).as_json())

    async def put_faults(self, request: web.Request) -> web.Response:
        """Change the faults of every dataset, or with ?dataset=ID of that one only."""
        dataset = request.query.get("dataset")
        unknown = self._unknown_dataset(dataset)
        if unknown is not None:
            return unknown
        before = self.emu.faults_for(dataset)
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise FaultError("expected a JSON object of fault settings")
            faults = before.updated(changes)
        except (ValueError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        await self._apply(dataset, before, faults, "seed" in changes)
        log.info("faults updated%s: %s", f" for {dataset}" if dataset else "", changes)
        return web.json_response(faults.as_json())

    async def _apply(self, dataset: str | None, before: Faults, faults: Faults, reseed: bool) -> None:
        emu = self.emu
        if dataset is None:
            emu.faults = faults
        else:
            emu.dataset_faults[dataset] = faults
        if reseed:
            emu.dice.reseed(faults.seed)
        if faults.refuse_subscriber and faults.refuse_subscriber != before.refuse_subscriber:
            await emu.close_all(1011, "Internal error", dataset, faults.refuse_subscriber)
        if before.paused and not faults.paused:
            emu.held, release = released(emu.held, lambda name: emu.faults_for(name).paused)
            for record, text in release:
                emu.deliver(record, text)

    async def close_now(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        code = int(body.get("code", self.emu.faults.close_code))
        closed = await self.emu.close_all(code, str(body.get("reason", "Going away")), body.get("dataset"))
        return web.json_response({"closed": closed})

    async def revoke_tokens(self, _: web.Request) -> web.Response:
        """Rotate the signing key, as after a Keycloak key rotation: every issued token now gets 401."""
        self.emu.issuer.rotate()
        return web.json_response({"ok": True})

    async def inject(self, request: web.Request) -> web.Response:
        """Send a raw frame (text or base64 binary) to every subscriber of a dataset, bypassing truth."""
        body = await request.json()
        dataset = body.get("dataset", next(iter(self.emu.settings.datasets)))
        sent = 0
        for sub in list(self.emu.subscribers.values()):
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
        emu = self.emu
        since = int(request.query.get("since", 0))
        dataset = request.query.get("dataset")
        events = [r.as_json() for r in emu.records[since:] if dataset is None or r.dataset == dataset]
        return web.json_response(
            {
                "now": time.time(),
                "events": events,
                "subscribers": [s.as_json() for s in emu.history],
                "next": len(emu.records),
            }
        )

    async def reset(self, _: web.Request) -> web.Response:
        self.emu.records.clear()
        self.emu.held.clear()
        self.emu.history = [s for s in self.emu.history if s.closed_at is None]
        return web.json_response({"ok": True})

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"ok": True, "subscribers": len(self.emu.subscribers), "events": len(self.emu.records)}
        )

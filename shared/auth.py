"""Access tokens for the collector: Keycloak client-credentials via python-keycloak.

A token is reused until shortly before it expires. When the token endpoint fails,
further requests wait out an exponential backoff instead of hammering it: callers
get an AuthError at once and count a failed post, never a tight loop.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from enum import StrEnum

from shared.deferred_import import deferred
from shared.http_deadline import guard, http_deadline

log = logging.getLogger("auth")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 60.0


class TokenResult(StrEnum):
    """Outcome of one token request (the `result` label of probe_token_requests)."""

    OK = "ok"
    ERROR = "error"


MAX_TOKEN_CHARS = 16384
MAX_LIFETIME = 86400.0
DEFAULT_LIFETIME = 60.0  # when the answer names none
TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def parse_token_answer(answer: object) -> tuple[str, float]:
    """(access token, lifetime in seconds) from a token endpoint's JSON answer; ValueError if unusable.

    The endpoint is a peer like any other: a token that is not a plain bearer string,
    or a lifetime that is negative, not a number or absurd, would otherwise become a
    token request per post or a header injection.
    """
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    token = answer.get("access_token")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS or not set(token) <= TOKEN_CHARS:
        raise ValueError("access_token is not a plain bearer token")
    lifetime = answer.get("expires_in", DEFAULT_LIFETIME)
    if lifetime is None:
        lifetime = DEFAULT_LIFETIME
    if isinstance(lifetime, bool) or not isinstance(lifetime, (int, float)) or not 1 <= lifetime <= MAX_LIFETIME:
        raise ValueError("expires_in is not a lifetime between 1 s and a day")
    return token, float(lifetime)


class AuthError(Exception):
    """No token can be had right now; str() is safe to log."""


class TokenProvider:
    def __init__(
        self,
        server_url: str,
        realm: str,
        client_id: str,
        client_secret: str,
        refresh_margin: float,
        on_request: Callable[[TokenResult], None] = lambda result: None,
        timeout: float = 10.0,
        trace: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        # Imported here, not with the module: python-keycloak brings httpx and its admin client,
        # which a process without auth never needs. Its token decoding (jwcrypto, cryptography:
        # about 10 MB) and its async file API are never called here, so they load only if touched.
        with deferred("jwcrypto", "aiofiles"):
            from keycloak import KeycloakOpenID

        # python-keycloak joins paths with urljoin: without a trailing slash "/auth" would be dropped.
        self._client = KeycloakOpenID(
            server_url=server_url.rstrip("/") + "/",
            realm_name=realm,
            client_id=client_id,
            client_secret_key=client_secret,
            timeout=max(1, round(timeout)),
        )
        # Never follow a redirect with the client secret in the body: requests would re-post the
        # form to wherever a 307 points. With no redirect allowed, a 3xx is a failed token request.
        session = self._client.connection._s
        session.max_redirects = 0
        for adapter in session.adapters.values():  # so that a token request ends by its deadline in all
            guard(adapter)
        self._timeout = timeout
        self._trace = trace  # a tracing subsegment around each token request
        self._margin = refresh_margin
        self._on_request = on_request
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._failures = 0
        self._next_try = 0.0

    def get(self, timeout: float | None = None) -> str:
        """A valid access token; fetches a new one when the current one is near its expiry.

        Waits at most `timeout` (default: the token request's own deadline) for a token
        request another thread has under way, so that a slow token endpoint never holds a
        post past its deadline.
        """
        wait = self._timeout if timeout is None else max(0.0, timeout)
        if not self._lock.acquire(timeout=wait):
            raise AuthError("a token request is still under way")
        try:
            now = time.monotonic()
            if self._token is not None and now < self._renew_at:
                return self._token
            if now < self._next_try:
                raise AuthError(f"token endpoint failing; next try in {self._next_try - now:.1f}s")
            return self._fetch(now)
        finally:
            self._lock.release()

    def invalidate(self, token: str) -> None:
        """The collector refused `token`: forget it (unless it was already replaced)."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self, now: float) -> str:
        from keycloak.exceptions import KeycloakError  # loaded already, with the client

        try:
            with self._trace(), http_deadline(self._timeout) as dog:
                answer = self._client.token(grant_type="client_credentials")
            token, lifetime = parse_token_answer(answer)
        except (KeycloakError, KeyError, ValueError, TypeError, OSError, RecursionError) as exc:
            self._failures += 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
            self._next_try = now + random.uniform(delay / 2, delay)
            self._on_request(TokenResult.ERROR)
            status = getattr(exc, "response_code", None)
            log.warning(
                "token request failed (%s%s); retry in %.1fs",
                "timeout" if dog.fired else type(exc).__name__,
                f", status {status}" if status else "",
                self._next_try - now,
            )
            raise AuthError(f"token request failed ({type(exc).__name__})") from None
        self._on_request(TokenResult.OK)
        if self._failures:
            log.info("token endpoint recovered after %d failed requests", self._failures)
        self._failures = 0
        self._token = token
        # Short-lived tokens (tests, odd realms) renew at half their life rather than at once.
        self._renew_at = now + lifetime - min(self._margin, lifetime / 2)
        return token

"""Access tokens for the collector: Keycloak client-credentials via python-keycloak.

A token is reused until shortly before it expires. When the token endpoint fails,
further requests wait out an exponential backoff instead of hammering it: callers
get an AuthError at once and count a failed post, never a tight loop.

The token endpoint is a peer like any other: its answer is read through a
BoundedAdapter (a size bound on the wire and after decompression, the deadline
checked while reading), and each failure is named by its cause (TokenFailure).
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

from shared.config import url_host
from shared.deferred_import import deferred
from shared.http_deadline import AnswerTooLarge, BoundedAdapter, cause, chain, http_deadline

log = logging.getLogger("auth")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 60.0


class TokenResult(StrEnum):
    """Outcome of one token request (the `result` label of probe_token_requests)."""

    OK = "ok"
    ERROR = "error"


class TokenFailure(StrEnum):
    """Why a token request failed (the `reason` label of probe_token_request_errors)."""

    DNS = "dns"  # Keycloak's host name does not resolve
    REFUSED = "refused"  # nothing listens at Keycloak's address
    TLS = "tls"
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # another failure of the connection (reset, cut short)
    REJECTED = "rejected"  # Keycloak refused the client: 401, invalid_client, unauthorized_client
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    REDIRECT = "redirect"  # a 3xx: never followed, the request carries the client secret
    BAD_ANSWER = "bad_answer"  # an answer too large, not JSON, or without a usable token


MAX_ANSWER_BYTES = 262144  # on the wire and decompressed: a token answer is a few KB
REJECTING_ERRORS = frozenset({"invalid_client", "unauthorized_client", "unauthorized"})
# A collector's 401 renews the shared token at most this often: a collector that refuses every
# token (a foreign or misconfigured one) must not turn each of its posts into a token request.
MIN_RENEWAL_SECONDS = 30.0


def token_failure(exc: BaseException, fired: bool = False) -> TokenFailure:
    """The cause of a failed token request, from what python-keycloak raised (pure)."""
    from requests.exceptions import TooManyRedirects

    status = getattr(exc, "response_code", None)
    if isinstance(status, int) and status >= 300:
        return status_failure(status, getattr(exc, "response_body", b""))
    if isinstance(exc, (ValueError, TypeError, KeyError, RecursionError)):
        return TokenFailure.BAD_ANSWER
    found = list(chain(exc))
    if any(isinstance(e, TooManyRedirects) for e in found):
        return TokenFailure.REDIRECT
    if any(isinstance(e, AnswerTooLarge) for e in found):
        return TokenFailure.BAD_ANSWER
    return TokenFailure(cause(exc, fired).value)


def status_failure(status: int, body: object) -> TokenFailure:
    """What a token endpoint's answer of `status` (300 or more) with `body` says."""
    if status == 401 or _error_code(body) in REJECTING_ERRORS:
        return TokenFailure.REJECTED
    if status < 400:
        return TokenFailure.REDIRECT
    return TokenFailure.HTTP_5XX if status >= 500 else TokenFailure.HTTP_4XX


def _error_code(body: object) -> str:
    """The OAuth `error` of a token endpoint's error body, or ""."""
    import json

    if not isinstance(body, (bytes, str)) or len(body) > MAX_ANSWER_BYTES:
        return ""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, str) else ""


HINTS = {
    TokenFailure.REJECTED: "check ORIGO_CLIENT_ID and the secret",
    TokenFailure.DNS: "check the Keycloak host name (KEYCLOAK_SERVER) and DNS",
    TokenFailure.REFUSED: "is Keycloak running at that address?",
}


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
    """No token can be had right now; str() is safe to log. `reason` says why."""

    def __init__(self, message: str, reason: TokenFailure | None, retry_in: float = 0.0) -> None:
        super().__init__(message)
        self.reason = reason  # None: no request was made (backoff, or another thread's request)
        self.retry_in = retry_in  # seconds before the next token request is made (the backoff)


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
        on_failure: Callable[[TokenFailure], None] = lambda reason: None,
        min_renewal: float = MIN_RENEWAL_SECONDS,
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
        self.host = url_host(server_url) or "?"  # for log lines: never a password or a query
        # Never follow a redirect with the client secret in the body: requests would re-post the
        # form to wherever a 307 points. With no redirect allowed, a 3xx is a failed token request.
        session = self._client.connection._s
        session.max_redirects = 0
        # Answers read bounded and by the deadline; no retries of urllib3's own (our backoff is the
        # retry, and urllib3's "Retrying (Retry(total=0…))" lines would name no cause).
        for prefix in ("http://", "https://"):
            session.mount(prefix, BoundedAdapter(MAX_ANSWER_BYTES, max_retries=0))
        self._timeout = timeout
        self._trace = trace  # a tracing subsegment around each token request
        self._margin = refresh_margin
        self._on_request = on_request
        self._on_failure = on_failure
        self._min_renewal = min_renewal
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._renewed_at = float("-inf")  # when a collector's refusal last made us renew
        self._failures = 0
        self._next_try = 0.0
        self._last_failure: TokenFailure | None = None

    @property
    def last_failure(self) -> TokenFailure | None:
        """The cause of the latest failed token request, None once one succeeds."""
        return self._last_failure

    def get(self, timeout: float | None = None) -> str:
        """A valid access token; fetches a new one when the current one is near its expiry.

        Waits at most `timeout` (default: the token request's own deadline) for a token
        request another thread has under way, so that a slow token endpoint never holds a
        post past its deadline.
        """
        wait = self._timeout if timeout is None else max(0.0, timeout)
        if not self._lock.acquire(timeout=wait):
            raise AuthError("a token request is still under way", None)
        try:
            now = time.monotonic()
            if self._token is not None and now < self._renew_at:
                return self._token
            if now < self._next_try:
                reason = self._last_failure
                raise AuthError(
                    f"token endpoint {self.host} failing ({reason}); next try in {self._next_try - now:.1f}s",
                    reason,
                    self._next_try - now,
                )
            return self._fetch(now)
        finally:
            self._lock.release()

    def invalidate(self, token: str) -> bool:
        """The collector refused `token`: forget it (True), unless it was already replaced (True: the
        caller retries with the new one) or a refusal already renewed it less than `min_renewal`
        seconds ago (False: a collector that refuses every token, say a foreign one, gets no more)."""
        with self._lock:
            if self._token != token:
                return True
            now = time.monotonic()
            if now - self._renewed_at < self._min_renewal:
                return False
            self._renewed_at = now
            self._token = None
            return True

    def _fetch(self, now: float) -> str:
        from keycloak.exceptions import KeycloakError  # loaded already, with the client

        fired = False
        try:
            with self._trace(), http_deadline(self._timeout) as dog:
                try:
                    answer = self._client.token(grant_type="client_credentials")
                finally:
                    fired = dog.fired
            token, lifetime = parse_token_answer(answer)
        except (KeycloakError, KeyError, ValueError, TypeError, OSError, RecursionError) as exc:
            reason = token_failure(exc, fired)
            self._failures += 1
            self._last_failure = reason
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self._failures - 1))
            self._next_try = now + random.uniform(delay / 2, delay)
            self._on_request(TokenResult.ERROR)
            self._on_failure(reason)
            status = getattr(exc, "response_code", None)
            hint = HINTS.get(reason)
            log.warning(
                "token request to %s failed: %s%s%s; retry in %.1fs",
                self.host,
                reason,
                f" (status {status})" if isinstance(status, int) and status else "",
                f": {hint}" if hint else "",
                self._next_try - now,
                extra={"reason": str(reason), "host": self.host},
            )
            raise AuthError(f"token request to {self.host} failed ({reason})", reason, self._next_try - now) from None
        self._on_request(TokenResult.OK)
        if self._failures:
            log.info("token endpoint %s recovered after %d failed requests", self.host, self._failures)
        self._failures = 0
        self._last_failure = None
        self._token = token
        # Short-lived tokens (tests, odd realms) renew at half their life rather than at once.
        self._renew_at = now + lifetime - min(self._margin, lifetime / 2)
        return token

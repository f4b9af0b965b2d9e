"""Posting one event to the collector: retries, the 401 renewal, and one honest outcome.

Retries (connection errors, timeouts, 429, 5xx) use tenacity with exponential
backoff and jitter and stop before the post's deadline. Whatever happens, the
caller gets exactly one PostResult, so each failed event is counted once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum

import requests
from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_exponential_jitter

from shared.auth import AuthError, TokenProvider
from shared.http_deadline import http_deadline
from shared.tracing import NoTracer

RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 3.0
MAX_ANSWER_BYTES = 65536  # the collector answers {"message": "Ok"}; more is not its answer


class PostError(StrEnum):
    """Why an event's post failed for good (the `reason` label of probe_event_post_errors)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_4XX = "http_4xx"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    AUTH = "auth"
    REDIRECT = "redirect"  # a 3xx: never followed, the request carries a token
    BAD_ANSWER = "bad_answer"  # a 2xx whose body is not the collector's JSON answer (a proxy's page, say)


@dataclass(frozen=True)
class PostResult:
    ok: bool
    reason: PostError | None
    status: int | None
    attempts: int
    duration: float


class _Retriable(Exception):
    def __init__(self, reason: PostError, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


class _Final(Exception):
    def __init__(self, reason: PostError, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


def status_reason(status: int) -> PostError:
    """The reason a post failed with this HTTP status."""
    if status == 429:
        return PostError.HTTP_429
    return PostError.HTTP_5XX if status >= 500 else PostError.HTTP_4XX


def _is_collector_answer(response: requests.Response) -> bool:
    """Whether a 2xx body is the collector's answer (a JSON object), read up to a bound."""
    body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
    if len(body) > MAX_ANSWER_BYTES:
        return False
    try:
        return isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return False


class Collector:
    def __init__(
        self,
        url: str,
        tokens: TokenProvider | None,
        deadline: float,
        session: requests.Session,
        tracer: NoTracer | None = None,
        as_list: bool = False,
        proxies: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        # This collector's own proxies, decided once (wiring.collector_for) and given with every
        # post, so requests never resolves them per post; none given means none used.
        self._proxies = dict(proxies or {})
        self.as_list = as_list  # the collector's /events/ endpoint takes a list of events
        # Prepared once: requests' per-request preparation (merging the session's settings, URL
        # parsing, header checks) cost a fifth of the sender's CPU per event (bench/).
        self._template = session.prepare_request(
            requests.Request("POST", url, headers={"Content-Type": "application/json"})
        )
        self.tokens = tokens
        self.deadline = deadline
        self.session = session
        self.tracer = tracer or NoTracer()

    def post(self, event: dict) -> PostResult:
        body = json.dumps([event] if self.as_list else event).encode()
        started = time.monotonic()
        attempts = 0

        def attempt() -> int:
            nonlocal attempts
            attempts += 1
            return self._attempt(body, started, attempts)

        retrying = Retrying(
            stop=stop_before_delay(self.deadline),
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.1),
            retry=retry_if_exception_type(_Retriable),
            reraise=True,
        )
        try:
            status = retrying(attempt)
        except (_Retriable, _Final) as exc:
            return PostResult(False, exc.reason, exc.status, attempts, time.monotonic() - started)
        return PostResult(True, None, status, attempts, time.monotonic() - started)

    def _send(self, body: bytes, headers: dict[str, str], remaining: float, number: int) -> tuple[int, bool]:
        """One POST within `remaining` seconds in all: (status, whether it is the collector's acceptance)."""
        with self.tracer.attempt(self.url, number) as trace, http_deadline(remaining) as dog:
            request = self._template.copy()
            request.body = body
            request.headers["Content-Length"] = str(len(body))
            request.headers.update(headers)
            if trace.header:  # the collector's own traces continue the probe's
                request.headers["X-Amzn-Trace-Id"] = trace.header
            try:
                response = self.session.send(
                    request,
                    timeout=(min(CONNECT_TIMEOUT, max(remaining, 0.001)), max(remaining, 0.001)),
                    allow_redirects=False,
                    stream=True,
                    proxies=self._proxies,
                )
                try:
                    status = response.status_code
                    trace.status(status)
                    return status, 200 <= status < 300 and _is_collector_answer(response)
                finally:
                    response.close()
            except requests.Timeout:
                trace.failed(PostError.TIMEOUT)
                raise _Retriable(PostError.TIMEOUT) from None
            except (requests.RequestException, OSError):
                # A read cut short by the deadline's watchdog is a timeout, not a connection error.
                reason = PostError.TIMEOUT if dog.fired else PostError.CONNECTION
                trace.failed(reason)
                raise _Retriable(reason) from None

    def _attempt(self, body: bytes, started: float, number: int) -> int:
        renewed = False
        while True:
            remaining = self.deadline - (time.monotonic() - started)
            if remaining <= 0:
                raise _Final(PostError.TIMEOUT)
            headers: dict[str, str] = {}
            token = None
            if self.tokens is not None:
                try:
                    token = self.tokens.get(timeout=remaining)
                except AuthError:
                    if self.deadline - (time.monotonic() - started) <= 0:
                        raise _Final(PostError.TIMEOUT) from None
                    raise _Retriable(PostError.AUTH) from None
                headers["Authorization"] = f"Bearer {token}"
                remaining = self.deadline - (time.monotonic() - started)
            status, accepted = self._send(body, headers, remaining, number)
            if 300 <= status < 400:
                raise _Final(PostError.REDIRECT, status)
            if status == 401 and token is not None and not renewed:
                # The contract: renew the token once and retry this request once.
                self.tokens.invalidate(token)
                renewed = True
                continue
            if status == 401:
                raise _Final(PostError.AUTH, status)
            if 200 <= status < 300:
                if not accepted:
                    raise _Final(PostError.BAD_ANSWER, status)
                return status
            if status in RETRIABLE_STATUSES:
                raise _Retriable(status_reason(status), status)
            raise _Final(status_reason(status), status)

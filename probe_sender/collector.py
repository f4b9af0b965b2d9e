"""Posting one event to the collector: retries, the 401 renewal, and one honest outcome.

Retries (connection errors, timeouts, 429, 5xx) use tenacity with exponential
backoff and jitter and stop before the post's deadline. Whatever happens, the
caller gets exactly one PostResult, so each failed event is counted once.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from enum import StrEnum

import requests
import urllib3.exceptions
from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_exponential_jitter

from shared.auth import AuthError, TokenProvider
from shared.config import url_host
from shared.http_deadline import AnswerTooLarge, AnswerTooSlow, Cause, cause, http_deadline, read_bounded
from shared.tracing import NoTracer

RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 3.0
MAX_ANSWER_BYTES = 65536  # the collector answers {"message": "Ok"}; more is not its answer


class PostError(StrEnum):
    """Why an event's post failed for good (the `reason` label of probe_event_post_errors)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"  # the connection failed otherwise (reset, cut short, unreachable)
    DNS = "dns"  # the collector's host name does not resolve (or not within the deadline)
    REFUSED = "refused"  # nothing listens at the collector's address
    TLS = "tls"  # the TLS handshake or the collector's certificate failed
    HTTP_4XX = "http_4xx"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    AUTH = "auth"  # the collector refused the token (401): never a failure to get one
    TOKEN = "token"  # no token could be had from Keycloak (probe_token_request_errors says why)
    REDIRECT = "redirect"  # a 3xx: never followed, the request carries a token
    BAD_ANSWER = "bad_answer"  # a 2xx that is not the collector's JSON answer (a proxy's page, say); a 1xx or 6xx


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


# What reading a request's answer can raise below requests: urllib3's own errors (ProtocolError for
# a body cut short, DecodeError for a bad gzip) are not OSErrors, nor are http.client's.
TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    AnswerTooLarge,
    AnswerTooSlow,
)
CAUSES = {
    Cause.DNS: PostError.DNS,
    Cause.REFUSED: PostError.REFUSED,
    Cause.TLS: PostError.TLS,
    Cause.TIMEOUT: PostError.TIMEOUT,
    Cause.CONNECTION: PostError.CONNECTION,
}


def is_collector_answer(body: bytes) -> bool:
    """Whether a 2xx body is the collector's answer: `{"message": "Ok"}` (the contract), or the older
    local stand-in's `{"seqno": n}`. Anything else (a proxy's page, another service's JSON such as
    `{"error": ...}`) is not, and the event must not be counted as posted on its word."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(doc, dict) or "error" in doc:
        return False
    seqno = doc.get("seqno")
    return doc.get("message") == "Ok" or (isinstance(seqno, int) and not isinstance(seqno, bool))


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
        self.host = url_host(url)  # for log lines: never the path's query or a password
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
        self._adapter = session.get_adapter(url)
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
        """One POST within `remaining` seconds in all: (status, whether it is the collector's acceptance).

        Sent through the adapter, not the session: requests' redirect handling would read a 3xx's
        body whole, and raise TooManyRedirects, before we could see the status; and no cookie a
        collector sets is kept for the next post.
        """
        with self.tracer.attempt(self.url, number) as trace, http_deadline(remaining) as dog:
            request = self._template.copy()
            request.body = body
            request.headers["Content-Length"] = str(len(body))
            request.headers.update(headers)
            if trace.header:  # the collector's own traces continue the probe's
                request.headers["X-Amzn-Trace-Id"] = trace.header
            try:
                response = self._adapter.send(
                    request,
                    stream=True,
                    timeout=(min(CONNECT_TIMEOUT, max(remaining, 0.001)), max(remaining, 0.001)),
                    verify=self.session.verify,
                    proxies=self._proxies,
                )
            except TRANSPORT_ERRORS as exc:
                reason = CAUSES[cause(exc, dog.fired)]
                trace.failed(reason)
                raise _Retriable(reason) from None
            try:
                status = response.status_code
                trace.status(status)
                if not 200 <= status < 300:
                    return status, False
                try:
                    return status, is_collector_answer(read_bounded(response, MAX_ANSWER_BYTES))
                except TRANSPORT_ERRORS as exc:
                    # The collector said 2xx and may have taken the event: not retried (that would
                    # post it twice), counted once; a body that drips past the deadline is a timeout.
                    reason = PostError.TIMEOUT if dog.fired or isinstance(exc, AnswerTooSlow) else PostError.BAD_ANSWER
                    trace.failed(reason)
                    raise _Final(reason, status) from None
            finally:
                response.close()

    def _attempt(self, body: bytes, started: float, number: int) -> int:
        renewed = False
        while True:
            remaining = self.deadline - (time.monotonic() - started)
            if remaining <= 0:
                raise _Final(PostError.TIMEOUT)
            headers: dict[str, str] = {}
            token = self._token(started, remaining)
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
                remaining = self.deadline - (time.monotonic() - started)
            status, accepted = self._send(body, headers, remaining, number)
            if status == 401 and token is not None and not renewed and self.tokens.invalidate(token):
                # The contract: renew the token once and retry this request once; but a token
                # fetched moments ago is not renewed again (TokenProvider.invalidate).
                renewed = True
                continue
            return judge(status, accepted)

    def _token(self, started: float, remaining: float) -> str | None:
        """A token for the post (None where posts go without one), or the exception that says why not."""
        if self.tokens is None:
            return None
        try:
            return self.tokens.get(timeout=remaining)
        except AuthError as exc:
            left = self.deadline - (time.monotonic() - started)
            if left <= 0:
                raise _Final(PostError.TIMEOUT) from None
            if exc.retry_in >= left:
                # No token can be had before the deadline (Keycloak refused the client, or is
                # down, and its backoff is longer): waiting it out would only hold a post slot
                # until every slot is busy and the schedule counts backpressure, not the cause.
                raise _Final(PostError.TOKEN) from None
            raise _Retriable(PostError.TOKEN) from None


def judge(status: int, accepted: bool) -> int:
    """The status of a post the collector accepted; otherwise the exception that says why it failed,
    and whether it is worth a retry. `accepted`: a 2xx's body is the collector's answer."""
    if not 200 <= status < 600:
        # A 1xx that requests takes as final (a CDN's 103, a 101), or no HTTP status at all:
        # not the collector's answer, and not retried (the request was delivered).
        raise _Final(PostError.BAD_ANSWER, status)
    if 300 <= status < 400:
        raise _Final(PostError.REDIRECT, status)
    if status == 401:
        raise _Final(PostError.AUTH, status)
    if 200 <= status < 300:
        if not accepted:
            raise _Final(PostError.BAD_ANSWER, status)
        return status
    if status in RETRIABLE_STATUSES:
        raise _Retriable(status_reason(status), status)
    raise _Final(status_reason(status), status)

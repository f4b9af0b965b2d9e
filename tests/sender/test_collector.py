"""Posting one event, in-process, against a scripted collector on loopback: one honest outcome each."""

from __future__ import annotations

import json
import time

import pytest
import requests

from probe_sender.collector import Collector, PostError
from shared import auth
from shared.auth import TokenProvider
from testkit.http_stub import Reply, Request, sequence, serve
from tests.helpers import free_port

EVENT = {"app_id": "abcdef01", "seqno": 7, "time_sent": "2026-11-28T00:00:00.000000+00:00"}
TOKEN_PATH = "/auth/realms/r/protocol/openid-connect/token"


def collector(url: str, deadline: float = 2.0, tokens: TokenProvider | None = None) -> Collector:
    return Collector(f"{url}/event-collector/event/ds/1", tokens, deadline, requests.Session())


def test_a_2xx_is_one_attempt_with_the_event_as_json() -> None:
    with serve(sequence(Reply(200))) as stub:
        result = collector(stub.url).post(EVENT)
    assert (result.ok, result.reason, result.status, result.attempts) == (True, None, 200, 1)
    (request,) = stub.requests
    assert request.path == "/event-collector/event/ds/1" and json.loads(request.body) == EVENT
    assert request.headers["Content-Type"] == "application/json" and "Authorization" not in request.headers


def test_5xx_and_429_are_retried_until_accepted() -> None:
    with serve(sequence(Reply(503), Reply(429), Reply(500), Reply(200))) as stub:
        result = collector(stub.url).post(EVENT)
    assert (result.ok, result.attempts) == (True, 4)
    assert len(stub.requests) == 4


def test_a_retriable_error_until_the_deadline_counts_once_with_its_reason() -> None:
    with serve(sequence(Reply(502))) as stub:
        started = time.monotonic()
        result = collector(stub.url, deadline=0.5).post(EVENT)
        took = time.monotonic() - started
    assert (result.ok, result.reason, result.status) == (False, PostError.HTTP_5XX, 502)
    assert result.attempts == len(stub.requests) > 1
    assert took < 1.5


def test_other_4xx_are_final_at_once() -> None:
    with serve(sequence(Reply(404, b'{"message": "Dataset with id:ds and version:1 does not exist"}'))) as stub:
        result = collector(stub.url).post(EVENT)
    assert (result.ok, result.reason, result.status, result.attempts) == (False, PostError.HTTP_4XX, 404, 1)


def test_a_hanging_collector_times_out_by_the_deadline() -> None:
    with serve(sequence(Reply(200, delay=3.0))) as stub:
        started = time.monotonic()
        result = collector(stub.url, deadline=0.5).post(EVENT)
        took = time.monotonic() - started
    assert (result.ok, result.reason) == (False, PostError.TIMEOUT)
    assert took < 1.5


def test_nothing_listening_is_refused() -> None:
    result = collector(f"http://127.0.0.1:{free_port()}", deadline=0.3).post(EVENT)
    assert (result.ok, result.reason) == (False, PostError.REFUSED)


def token_reply(n: int) -> Reply:
    return Reply(200, json.dumps({"access_token": f"token-{n}", "expires_in": 300, "token_type": "Bearer"}).encode())


def test_a_401_renews_the_token_once_and_retries_once() -> None:
    issued = iter(range(1, 100))

    def script(request: Request) -> Reply:
        if request.path == TOKEN_PATH:
            return token_reply(next(issued))
        return Reply(200) if request.headers["Authorization"] == "Bearer token-2" else Reply(401)

    with serve(script) as stub:
        tokens = TokenProvider(f"{stub.url}/auth", "r", "client", "secret", refresh_margin=30)
        result = collector(stub.url, tokens=tokens).post(EVENT)
        posts = [r.headers["Authorization"] for r in stub.requests if r.path != TOKEN_PATH]
    assert (result.ok, result.attempts) == (True, 1)
    assert posts == ["Bearer token-1", "Bearer token-2"]


def test_a_second_401_is_an_auth_error() -> None:
    issued = iter(range(1, 100))

    def script(request: Request) -> Reply:
        return token_reply(next(issued)) if request.path == TOKEN_PATH else Reply(401)

    with serve(script) as stub:
        tokens = TokenProvider(f"{stub.url}/auth", "r", "client", "secret", refresh_margin=30)
        result = collector(stub.url, tokens=tokens).post(EVENT)
        posts = [r for r in stub.requests if r.path != TOKEN_PATH]
    assert (result.ok, result.reason, result.status) == (False, PostError.AUTH, 401)
    assert len(posts) == 2


def test_a_post_that_no_token_can_reach_before_its_deadline_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keycloak refuses the client, and its backoff outlasts the post's deadline: the post fails for
    want of a token on its first attempt instead of holding a post slot until the deadline (with
    wrong credentials every slot filled and the sender logged backpressure, not the cause)."""
    monkeypatch.setattr(auth, "BACKOFF_FIRST", 30.0)  # the backoff after one refusal: 15 to 30 s
    refused = Reply(401, json.dumps({"error": "unauthorized_client"}).encode())
    with serve(lambda _: refused) as stub:
        tokens = TokenProvider(f"{stub.url}/auth", "r", "client", "wrong", refresh_margin=30)
        result = collector(stub.url, deadline=5.0, tokens=tokens).post(EVENT)
        token_requests = [r for r in stub.requests if r.path == TOKEN_PATH]
        posts = [r for r in stub.requests if r.path != TOKEN_PATH]
    assert (result.ok, result.reason, result.attempts) == (False, PostError.TOKEN, 1)
    assert len(token_requests) == 1 and not posts
    assert tokens.last_failure == auth.TokenFailure.REJECTED


def test_a_redirect_is_never_followed_and_counts_as_its_own_error() -> None:
    with serve(sequence(Reply(307, b"", {"Location": "http://127.0.0.2:9/steal"}))) as stub:
        result = collector(stub.url).post(EVENT)
    assert (result.ok, result.reason, result.status, result.attempts) == (False, PostError.REDIRECT, 307, 1)
    assert len(stub.requests) == 1


def test_a_2xx_that_is_not_the_collectors_answer_is_not_an_acceptance() -> None:
    for body in (b"<html>proxy login</html>", b"[1, 2]", b"{" * 70000, b'{"message": "' + b"x" * 70000 + b'"}'):
        with serve(sequence(Reply(200, body, {"Content-Type": "text/html"}))) as stub:
            result = collector(stub.url).post(EVENT)
        assert (result.ok, result.reason, result.status) == (False, PostError.BAD_ANSWER, 200), body[:20]
    with serve(sequence(Reply(200, b'{"seqno": 3}'))) as stub:  # the old local stand-in's answer
        assert collector(stub.url).post(EVENT).ok

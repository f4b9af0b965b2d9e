"""The token provider, in-process, with python-keycloak against a scripted token endpoint on loopback."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest

from shared.auth import AuthError, TokenProvider, TokenResult
from tests.http_stub import Reply, Request, sequence, serve


def token_reply(token: str, expires_in: float = 300) -> Reply:
    return Reply(200, json.dumps({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}).encode())


def provider(url: str, results: list[TokenResult], margin: float = 30) -> TokenProvider:
    return TokenProvider(f"{url}/auth", "api-catalog", "client", "s3cret", margin, on_request=results.append)


def test_a_token_is_fetched_with_client_credentials_and_reused() -> None:
    results: list[TokenResult] = []
    with serve(sequence(token_reply("t1"))) as stub:
        tokens = provider(stub.url, results)
        assert [tokens.get(), tokens.get(), tokens.get()] == ["t1"] * 3
    (request,) = stub.requests
    assert request.path == "/auth/realms/api-catalog/protocol/openid-connect/token"
    form = parse_qs(request.body.decode())
    assert form["grant_type"] == ["client_credentials"] and form["client_secret"] == ["s3cret"]
    assert results == [TokenResult.OK]


def test_a_short_lived_token_is_renewed_at_half_its_life() -> None:
    results: list[TokenResult] = []
    with serve(sequence(token_reply("t1", expires_in=0.4), token_reply("t2"))) as stub:
        tokens = provider(stub.url, results)
        assert tokens.get() == "t1"
        time.sleep(0.25)
        assert tokens.get() == "t2"
    assert results == [TokenResult.OK, TokenResult.OK]


def test_invalidate_forgets_only_the_refused_token() -> None:
    with serve(sequence(token_reply("t1"), token_reply("t2"))) as stub:
        tokens = provider(stub.url, [])
        assert tokens.get() == "t1"
        tokens.invalidate("some-older-token")
        assert tokens.get() == "t1"
        tokens.invalidate("t1")
        assert tokens.get() == "t2"


def test_a_failing_endpoint_is_backed_off_not_hammered() -> None:
    results: list[TokenResult] = []
    with serve(sequence(Reply(503, b'{"error": "down"}'), token_reply("t1"))) as stub:
        tokens = provider(stub.url, results)
        with pytest.raises(AuthError):
            tokens.get()
        for _ in range(50):  # within the backoff: refused at once, no request
            with pytest.raises(AuthError, match="next try in"):
                tokens.get()
        assert len(stub.requests) == 1
        time.sleep(0.5)  # the first backoff is at most 0.5 s
        assert tokens.get() == "t1"
    assert results == [TokenResult.ERROR, TokenResult.OK]


def test_a_token_error_never_shows_the_secret() -> None:
    def script(_: Request) -> Reply:
        return Reply(401, b'{"error": "unauthorized_client", "error_description": "bad secret s3cret"}')

    with serve(script) as stub, pytest.raises(AuthError) as raised:
        provider(stub.url, []).get()
    assert "s3cret" not in str(raised.value) and raised.value.__cause__ is None

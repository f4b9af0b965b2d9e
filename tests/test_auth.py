"""The token provider, in-process, with python-keycloak against a scripted token endpoint on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from urllib.parse import parse_qs

import pytest

from shared.auth import AuthError, TokenFailure, TokenProvider, TokenResult, status_failure
from testkit.http_stub import Reply, Request, sequence, serve
from tests.helpers import ROOT, wait_until


def token_reply(token: str, expires_in: float = 300) -> Reply:
    return Reply(200, json.dumps({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}).encode())


def provider(url: str, results: list[TokenResult], margin: float = 30, min_renewal: float = 30) -> TokenProvider:
    return TokenProvider(
        f"{url}/auth", "api-catalog", "client", "s3cret", margin, on_request=results.append, min_renewal=min_renewal
    )


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
    with serve(sequence(token_reply("t1", expires_in=2), token_reply("t2"))) as stub:
        tokens = provider(stub.url, results)
        fetched = time.monotonic()
        assert tokens.get() == "t1"
        wait_until(lambda: tokens.get() == "t2", 5, "the token renewed")
        assert 1.0 <= time.monotonic() - fetched < 2.0  # at half its life, before it expires
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


def test_a_redirecting_token_endpoint_never_gets_the_secret_again() -> None:
    with serve(sequence(Reply(307, b"", {"Location": "/elsewhere"}))) as stub:
        with pytest.raises(AuthError):
            provider(stub.url, []).get()
        assert len(stub.requests) == 1  # the form with the secret was posted once, to the endpoint


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 50000 + b"]" * 50000,
        b'{"access_token": ["not", "a", "string"], "expires_in": 300}',
        b'{"access_token": "abc\\r\\nX-Injected: 1", "expires_in": 300}',
        b'{"access_token": "t1", "expires_in": -5}',
        b'{"access_token": "t1", "expires_in": NaN}',
        b'{"access_token": "t1", "expires_in": 1e300}',
        b'{"access_token": "t1", "expires_in": "300"}',
        b'"just a string"',
    ],
)
def test_an_unusable_token_answer_is_a_counted_token_error_with_backoff(body: bytes) -> None:
    results: list[TokenResult] = []
    with serve(sequence(Reply(200, body))) as stub:
        tokens = provider(stub.url, results)
        with pytest.raises(AuthError):
            tokens.get()
        with pytest.raises(AuthError, match="next try in"):
            tokens.get()
        assert len(stub.requests) == 1
    assert results == [TokenResult.ERROR]


FETCH_AND_REPORT = """
import json, sys
from shared.auth import TokenProvider
from testkit.http_stub import Reply, serve
answer = json.dumps({"access_token": "t1", "expires_in": 300}).encode()
with serve(lambda request: Reply(200, answer)) as stub:
    token = TokenProvider(stub.url + "/auth", "realm", "client", "s3cret", 30).get()
loaded = "cryptography.hazmat.bindings._rust" in sys.modules
from keycloak import keycloak_openid
print(json.dumps([token, loaded, keycloak_openid.jwk.JWK.__name__]))
"""


def test_keycloaks_token_decoding_loads_only_when_touched() -> None:
    """The sender fetches tokens without paying for cryptography (about 10 MB), which it never uses."""
    done = subprocess.run(
        [sys.executable, "-c", FETCH_AND_REPORT], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    )
    token, loaded_before_use, used = json.loads(done.stdout)
    assert token == "t1" and not loaded_before_use
    assert used == "JWK"  # deferred, not taken away: touching it loads it


def test_a_refusal_renews_the_token_at_most_once_per_interval() -> None:
    with serve(sequence(token_reply("t1"), token_reply("t2"), token_reply("t3"))) as stub:
        tokens = provider(stub.url, [], min_renewal=0.5)
        assert tokens.get() == "t1" and tokens.invalidate("t1")
        assert tokens.get() == "t2" and not tokens.invalidate("t2")  # within the interval: kept
        assert tokens.get() == "t2"
        time.sleep(0.5)  # the interval itself is the point here
        assert tokens.invalidate("t2") and tokens.get() == "t3"
    assert len(stub.requests) == 3


def test_a_token_endpoints_status_says_why_it_refused() -> None:
    """401, or an OAuth error that names the client, is a rejection whatever the status; then by class."""
    assert status_failure(401, b"") is TokenFailure.REJECTED
    assert status_failure(400, b'{"error": "unauthorized_client"}') is TokenFailure.REJECTED
    assert status_failure(400, b'{"error": "invalid_grant"}') is TokenFailure.HTTP_4XX
    assert status_failure(302, b"") is TokenFailure.REDIRECT
    assert status_failure(503, b"not json") is TokenFailure.HTTP_5XX
    assert status_failure(404, None) is TokenFailure.HTTP_4XX

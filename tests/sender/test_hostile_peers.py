"""Collectors and token endpoints that bloat, cut short, redirect, lie or never resolve (issue 22, 24).

Each peer is a small server written here, on a free loopback port; the client is the sender's own
(its session as wiring builds it, python-keycloak as TokenProvider drives it). Every call must end
by its deadline, within a bound of memory, in exactly one outcome named by its cause.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from probe_sender import wiring
from probe_sender.collector import Collector, PostError
from shared.auth import MAX_ANSWER_BYTES, AuthError, TokenFailure, TokenProvider, TokenResult
from testkit.hostile import drip
from testkit.hostile import read_head as read_request
from testkit.hostile import serve as raw_peer
from testkit.http_stub import Reply, Request, sequence, serve
from tests.helpers import free_port

EVENT = {"app_id": "abcdef01", "seqno": 7, "time_sent": "2026-11-28T00:00:00.000000+00:00"}
TOKEN_PATH = "/auth/realms/r/protocol/openid-connect/token"
NEVER_RESOLVES = "collector.never-answers.test"


def collector(url: str, deadline: float = 2.0, tokens: TokenProvider | None = None) -> Collector:
    """A collector on the session the sender really uses (max_redirects=0, guarded adapters)."""
    return Collector(f"{url}/event-collector/event/ds/1", tokens, deadline, wiring.new_session(4))


def provider(url: str, failures: list[TokenFailure] | None = None, timeout: float = 2.0) -> TokenProvider:
    seen: list[TokenFailure] = [] if failures is None else failures
    return TokenProvider(f"{url}/auth", "r", "client", "s3cret", 30, timeout=timeout, on_failure=seen.append)


def token_reply(n: int) -> Reply:
    return Reply(200, json.dumps({"access_token": f"token-{n}", "expires_in": 300}).encode())


# ---- 22.9: every exception path of a post ends in one counted outcome ----


def test_a_307_from_the_collector_is_a_redirect_read_no_further_and_not_retried() -> None:
    """On the sender's own session (max_redirects=0) requests used to raise TooManyRedirects, counted
    `connection` and retried until the deadline; it also read the 3xx's body whole first."""
    big = b"x" * (8 * 1024 * 1024)
    with serve(sequence(Reply(307, big, {"Location": "http://127.0.0.2:9/steal"}))) as stub:
        result = collector(stub.url).post(EVENT)
    assert (result.ok, result.reason, result.status, result.attempts) == (False, PostError.REDIRECT, 307, 1)
    assert len(stub.requests) == 1


def test_a_2xx_that_is_another_services_json_is_a_bad_answer() -> None:
    for body in (b'{"error": "not the collector"}', b"{}", b'{"message": "Forbidden"}', b'{"seqno": true}'):
        with serve(sequence(Reply(200, body))) as stub:
            result = collector(stub.url).post(EVENT)
        assert (result.ok, result.reason, result.status, result.attempts) == (False, PostError.BAD_ANSWER, 200, 1)
    for body in (b'{"message": "Ok"}', b'{"seqno": 3}'):  # the contract's answer, the old stand-in's
        with serve(sequence(Reply(200, body))) as stub:
            assert collector(stub.url).post(EVENT).ok, body


OK_ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{"message": "Ok"}'


def cut_short(conn: socket.socket, stopping: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mess')
    conn.close()


def test_a_2xx_whose_body_is_cut_short_is_one_counted_bad_answer_not_an_exception() -> None:
    """urllib3's ProtocolError used to escape post(): a traceback per event, counted nowhere."""
    with raw_peer(cut_short) as peer:
        result = collector(f"http://127.0.0.1:{peer.port}").post(EVENT)
    # Not retried: the collector said 2xx and may have taken the event.
    assert (result.ok, result.reason, result.status, result.attempts) == (False, PostError.BAD_ANSWER, 200, 1)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + OK_ANSWER,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 999 Nonsense\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_a_status_outside_the_http_classes_is_a_bad_answer_not_a_4xx_or_5xx(answer: bytes) -> None:
    """A 1xx that is not 100 (a CDN's 103 Early Hints, a 101) is the final answer to requests, and a
    status past 599 is none of HTTP's: they were counted http_4xx and http_5xx, which send the
    operator to the collector's rules or its health. They are not the collector's answer, and not
    retried (the request was delivered, and may have been taken)."""

    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        read_request(conn)
        conn.sendall(answer)
        stopping.wait(5)

    with raw_peer(handle) as peer:
        result = collector(f"http://127.0.0.1:{peer.port}").post(EVENT)
    assert (result.ok, result.reason, result.attempts) == (False, PostError.BAD_ANSWER, 1)


def test_a_2xx_whose_body_drips_ends_by_the_deadline_as_a_timeout() -> None:
    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n")
        drip(conn, b'{"message": "Ok"}', 0.3, stopping)

    with raw_peer(handle) as peer:
        started = time.monotonic()
        result = collector(f"http://127.0.0.1:{peer.port}", deadline=1.0).post(EVENT)
        took = time.monotonic() - started
    assert (result.ok, result.reason, result.status, result.attempts) == (False, PostError.TIMEOUT, 200, 1)
    assert took < 1.0 + 2.0, took


# ---- 22.3: a collector's 401 renews the shared token at most once per interval; the allow-list ----


def test_a_collector_that_refuses_every_token_does_not_make_a_token_request_per_post() -> None:
    issued = iter(range(1, 1000))

    def script(request: Request) -> Reply:
        return token_reply(next(issued)) if request.path == TOKEN_PATH else Reply(401, b'{"message": "Unauthorized"}')

    with serve(script) as stub:
        tokens = provider(stub.url)
        refusing = collector(stub.url, tokens=tokens)
        results = [refusing.post(EVENT) for _ in range(20)]
        token_requests = [r for r in stub.requests if r.path == TOKEN_PATH]
    assert {(r.ok, r.reason, r.status) for r in results} == {(False, PostError.AUTH, 401)}
    # The first token, and one renewal for the first refusal (the contract's retry); the other 19
    # refusals within the interval renew nothing (they used to renew once each).
    assert len(token_requests) == 2
    assert [r.attempts for r in results] == [1] * 20 and len(stub.requests) == 2 + 21


def test_the_token_goes_only_to_allowed_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """COLLECTOR_TOKEN_HOSTS defaults to COLLECTOR_URL's host: a dataset entry naming another host
    (here another port of loopback) gets its posts without the bearer token."""
    from shared import config

    issued = iter(range(1, 1000))

    def script(request: Request) -> Reply:
        return token_reply(next(issued)) if request.path == TOKEN_PATH else Reply(200)

    with serve(script) as own, serve(sequence(Reply(401))) as foreign:
        path = tmp_path / "probe.yaml"
        path.write_text(
            "environment: local\n"
            f"collector:\n  url: '{own.url}/event-collector/event/{{dataset_id}}/{{version}}'\n"
            f"auth:\n  keycloak_server: '{own.url}/auth'\n  realm: r\n"
            "datasets:\n"
            "  - id: good\n"
            f"  - id: elsewhere\n    collector_url: '{foreign.url}/event-collector/event/{{dataset_id}}/{{version}}'\n"
        )
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        cfg = config.load({"PROBE_CONFIG": str(path)})
        session = wiring.session_for(cfg)
        tokens = wiring.token_provider(cfg, wiring.NoTracer())
        good, elsewhere = (wiring.collector_for(cfg, ds, tokens, session, wiring.NoTracer()) for ds in cfg.datasets)
        results = [good.post(EVENT), elsewhere.post(EVENT), elsewhere.post(EVENT)]
        assert cfg.token_hosts() == (config.url_host(own.url),)
    assert [r.reason for r in results] == [None, PostError.AUTH, PostError.AUTH]
    assert all(r.headers.get("Authorization", "").startswith("Bearer ") for r in own.requests if "event" in r.path)
    assert foreign.requests and not any("Authorization" in r.headers for r in foreign.requests)
    allowed = config.load({"PROBE_CONFIG": str(path), "COLLECTOR_TOKEN_HOSTS": f"{config.url_host(foreign.url)}"})
    assert allowed.token_allowed(foreign.url) and not allowed.token_allowed(own.url)
    assert any("not sent to the collector of elsewhere" in w for w in cfg.warnings)


# ---- 22.11: the post deadline covers name resolution ----


@pytest.fixture
def dns_never_answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """getaddrinfo for NEVER_RESOLVES blocks as a resolver whose DNS server never answers does.

    In-process, because the point is the client's resolver step, and a process's resolv.conf cannot
    be pointed at a silent loopback server without root and a mount namespace; the real
    getaddrinfo is what urllib3 calls (via socket.getaddrinfo), so patching it is faithful."""
    real = socket.getaddrinfo
    release = threading.Event()

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == NEVER_RESOLVES:
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield release
    release.set()


def test_a_post_whose_host_never_resolves_ends_by_its_deadline_as_dns(dns_never_answers: threading.Event) -> None:
    started = time.monotonic()
    result = collector(f"http://{NEVER_RESOLVES}:{free_port()}", deadline=1.0).post(EVENT)
    took = time.monotonic() - started
    assert (result.ok, result.reason) == (False, PostError.DNS)
    assert took < 1.0 + 2.0, took  # the deadline, plus a margin for a busy machine; not the resolver's 30 s


def test_each_address_of_a_host_is_tried_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving on our own (to bound it) must keep urllib3's fallback to the next address."""
    real = socket.getaddrinfo

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> object:
        if host == "two.test":  # the first address refuses (nothing on 127.0.0.2), the second answers
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ("127.0.0.2", "127.0.0.1")]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with serve(sequence(Reply(200))) as stub:
        result = collector(stub.url.replace("127.0.0.1", "two.test")).post(EVENT)
    assert (result.ok, result.attempts) == (True, 1)


def test_a_token_request_whose_host_never_resolves_ends_by_its_deadline_as_dns(
    dns_never_answers: threading.Event,
) -> None:
    failures: list[TokenFailure] = []
    tokens = provider(f"http://{NEVER_RESOLVES}:{free_port()}", failures, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(AuthError):
        tokens.get()
    assert time.monotonic() - started < 1.0 + 2.0
    assert failures == [TokenFailure.DNS]


# ---- 22.2: token answers are bounded on the wire and after decompression ----


def gzip_bomb(decoded: int) -> bytes:
    """A gzip stream of `decoded` zero bytes (about a thousandth of that on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    return b"".join([*(packer.compress(block) for _ in range(decoded // len(block))), packer.flush()])


def test_a_gzip_bomb_token_answer_is_a_bad_answer_read_no_further_than_the_bound() -> None:
    bomb = gzip_bomb(256 * 1024 * 1024)
    failures: list[TokenFailure] = []
    with serve(sequence(Reply(200, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}))) as stub:
        tokens = provider(stub.url, failures)
        tracemalloc.start()
        try:
            with pytest.raises(AuthError):
                tokens.get()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert failures == [TokenFailure.BAD_ANSWER]
    assert peak < 16 * MAX_ANSWER_BYTES, peak  # not the 256 MB it holds


def endless(conn: socket.socket, stopping: threading.Event) -> None:
    """A token endpoint whose answer never ends, sent as fast as the client takes it."""
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    block = b'{"access_token": "' + b"a" * 65536
    while not stopping.is_set():
        conn.sendall(block)


def test_an_endless_plain_token_answer_is_cut_at_the_bound_well_within_the_deadline() -> None:
    failures: list[TokenFailure] = []
    with raw_peer(endless) as peer:
        tokens = provider(f"http://127.0.0.1:{peer.port}", failures, timeout=10.0)
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(AuthError):
                tokens.get()
            took = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert failures == [TokenFailure.BAD_ANSWER]
    assert peak < 16 * MAX_ANSWER_BYTES, peak
    assert took < 10.0, took


def test_a_token_answer_that_declares_too_much_is_not_read() -> None:
    def handle(conn: socket.socket, stopping: threading.Event) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9000000000\r\n\r\n")
        stopping.wait(30)

    failures: list[TokenFailure] = []
    with raw_peer(handle) as peer, pytest.raises(AuthError):
        provider(f"http://127.0.0.1:{peer.port}", failures, timeout=5.0).get()
    assert failures == [TokenFailure.BAD_ANSWER]


# ---- 24: token failures name their cause; `auth` on a post is the collector's refusal only ----


def test_wrong_credentials_are_rejected_with_the_hint_and_the_host(caplog: pytest.LogCaptureFixture) -> None:
    body = b'{"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"}'
    failures: list[TokenFailure] = []
    with (
        serve(sequence(Reply(401, body))) as stub,
        caplog.at_level(logging.WARNING, "auth"),
        pytest.raises(AuthError) as raised,
    ):
        provider(stub.url, failures).get()
    assert failures == [TokenFailure.REJECTED] and raised.value.reason is TokenFailure.REJECTED
    (line,) = [r.getMessage() for r in caplog.records if r.name == "auth"]
    assert "check ORIGO_CLIENT_ID and the secret" in line and stub.url.removeprefix("http://") in line
    assert "s3cret" not in line


def test_a_400_invalid_client_is_rejected_too() -> None:
    failures: list[TokenFailure] = []
    with serve(sequence(Reply(400, b'{"error": "unauthorized_client"}'))) as stub, pytest.raises(AuthError):
        provider(stub.url, failures).get()
    assert failures == [TokenFailure.REJECTED]


def test_keycloak_unreachable_is_refused_and_the_post_says_token_not_auth(caplog: pytest.LogCaptureFixture) -> None:
    failures: list[TokenFailure] = []
    # Bound but not listening: connections are refused for as long as it is held (a port merely
    # free could be taken by another program on a busy machine meanwhile).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        keycloak = f"http://127.0.0.1:{closed.getsockname()[1]}"
        with serve(sequence(Reply(200))) as stub, caplog.at_level(logging.DEBUG):
            result = collector(stub.url, deadline=1.0, tokens=provider(keycloak, failures)).post(EVENT)
    assert (result.ok, result.reason) == (False, PostError.TOKEN)
    assert failures[0] is TokenFailure.REFUSED
    assert not stub.requests  # no post went without the token
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]  # no urllib3 retry chatter


def test_a_keycloak_5xx_and_3xx_are_named() -> None:
    for reply, expected in (
        (Reply(503, b"down"), TokenFailure.HTTP_5XX),
        (Reply(404, b"no realm"), TokenFailure.HTTP_4XX),
        (Reply(302, b"", {"Location": "/login"}), TokenFailure.REDIRECT),
        (Reply(200, b"<html>"), TokenFailure.BAD_ANSWER),
    ):
        failures: list[TokenFailure] = []
        results: list[TokenResult] = []
        with serve(sequence(reply)) as stub, pytest.raises(AuthError):
            TokenProvider(
                f"{stub.url}/auth", "r", "c", "s", 30, on_request=results.append, on_failure=failures.append
            ).get()
        assert (failures, results) == ([expected], [TokenResult.ERROR]), reply


# ---- the cause of a failure, as a pure function ----


def _wrapped(inner: BaseException) -> BaseException:
    """As requests raises it: a ConnectionError around urllib3's MaxRetryError around the cause."""
    import requests
    from urllib3.exceptions import MaxRetryError

    try:
        try:
            raise inner
        except BaseException as exc:
            raise MaxRetryError(None, "/", exc) from exc  # type: ignore[arg-type]
    except MaxRetryError as retry:
        return requests.ConnectionError(retry)


def test_the_cause_of_a_failure_is_found_however_deep_it_is_wrapped() -> None:
    import ssl

    from urllib3.exceptions import NameResolutionError, NewConnectionError, ProtocolError

    from shared.http_deadline import Cause, cause

    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    cases = [
        (_wrapped(NameResolutionError("h", None, socket.gaierror(-2, "Name or service not known"))), Cause.DNS),  # type: ignore[arg-type]
        (_wrapped(refused), Cause.REFUSED),
        (_wrapped(ssl.SSLCertVerificationError("certificate verify failed")), Cause.TLS),
        (_wrapped(TimeoutError("timed out")), Cause.TIMEOUT),
        (_wrapped(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))), Cause.CONNECTION),
    ]
    for exc, expected in cases:
        assert cause(exc) is expected, exc
    assert cause(_wrapped(ConnectionResetError(104, "reset")), fired=True) is Cause.TIMEOUT


def test_a_url_two_parsers_read_differently_never_gets_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`http://foreign\\@allowed/` is `allowed` to urllib.parse (the allow-list's parser) but `foreign`
    to urllib3, which connects: the bearer token went to the foreign host. Such a URL is refused
    as a setting, and the token decision uses the connecting client's reading too."""
    import dataclasses

    from shared import config

    issued = iter(range(1, 1000))

    def script(request: Request) -> Reply:
        return token_reply(next(issued)) if request.path == TOKEN_PATH else Reply(200)

    with serve(script) as own, serve(sequence(Reply(200))) as foreign:
        own_host, foreign_host = config.url_host(own.url), config.url_host(foreign.url)
        sneaky = f"http://{foreign_host}\\@{own_host}/event-collector/event/{{dataset_id}}/{{version}}"
        path = tmp_path / "probe.yaml"
        path.write_text(
            "environment: local\n"
            f"collector:\n  url: '{own.url}/event-collector/event/{{dataset_id}}/{{version}}'\n"
            f"auth:\n  keycloak_server: '{own.url}/auth'\n  realm: r\n"
            "datasets:\n  - id: good\n"
        )
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(config.ConfigError, match=r"COLLECTOR_URL.*no backslash"):
            config.load({"PROBE_CONFIG": str(path), "COLLECTOR_URL": sneaky})
        cfg = config.load({"PROBE_CONFIG": str(path)})
        assert not cfg.token_allowed(sneaky)
        ds = dataclasses.replace(cfg.datasets[0], collector_url=sneaky)  # past the settings' check
        tokens = wiring.token_provider(cfg, wiring.NoTracer())
        wiring.collector_for(cfg, ds, tokens, wiring.session_for(cfg), wiring.NoTracer()).post(EVENT)
    assert foreign.requests, "the post went to the host urllib3 reads"
    assert not any("Authorization" in r.headers for r in foreign.requests)

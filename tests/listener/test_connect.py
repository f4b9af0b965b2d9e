"""What a failed connection attempt counts as and how it is told, and a close frame's code, as pure logic."""

from __future__ import annotations

import websocket

from probe_listener import connect
from probe_listener.connect import ConnectFailure, Failed, failure, problem
from probe_listener.frames import close_code


def test_a_failure_keeps_its_reason_unless_the_deadline_cut_it() -> None:
    refused = Failed(ConnectFailure.REFUSED, "Connection refused")
    assert (failure(refused, fired=False).reason, failure(refused, fired=False).detail) == (
        ConnectFailure.REFUSED,
        "Connection refused",
    )
    cut = failure(refused, fired=True)
    assert cut.reason is ConnectFailure.TIMEOUT
    assert cut.detail == f"no subscription within {connect.CONNECT_TIMEOUT:g}s"
    # A name that did not resolve, or a redirect, is that whenever it is found out.
    for reason in (ConnectFailure.DNS, ConnectFailure.REDIRECT):
        assert failure(Failed(reason, "x"), fired=True).reason is reason


def test_an_unforeseen_error_is_error_described_without_its_url() -> None:
    found = failure(websocket.WebSocketException("bad frame at ws://h/x?webhook_token=secret"), fired=False)
    assert found.reason is ConnectFailure.ERROR
    assert "secret" not in found.detail and found.detail == "bad frame at ws://h/x"
    assert failure(OSError(113, "No route to host"), fired=False).detail == "No route to host"
    assert failure(TimeoutError(), fired=True).reason is ConnectFailure.TIMEOUT


def test_the_problem_names_host_and_what_to_check() -> None:
    assert problem(ConnectFailure.REFUSED, "refused", "h:1", "main", "42") == "refused (h:1): refused"
    assert problem(ConnectFailure.REJECTED, "the handshake was answered 403", "h:1", "main", "42").endswith(
        "; the webhook token of main does not open dataset 42"
    )
    assert problem(ConnectFailure.HTTP_4XX, "404", "h:1", "main", "42").endswith(
        "; is dataset 42 known to the subscription?"
    )


def test_a_close_frame_may_carry_no_code() -> None:
    assert close_code(b"\x03\xe9Going away") == 1001
    assert close_code(b"\x03\xe8") == 1000
    assert close_code(b"") is None
    assert close_code(b"\x03") is None

"""`probe health`: asks the configured port, says why in one line, never hangs."""

from __future__ import annotations

import dataclasses

import pytest

from probe_stack.commands.health import check
from probe_stack.metrics.address import metrics_address
from shared import config as config_mod
from shared.exits import ExitStatus
from testkit.http_stub import Reply, serve
from tests.helpers import free_port


def config(port: int, host: str = "127.0.0.1") -> config_mod.Config:
    cfg = config_mod.load({"ORIGO_ENVIRONMENT": "local"}, path="")
    return dataclasses.replace(cfg, metrics_port=port, metrics_host=host)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_healthy_when_the_configured_port_answers_200(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(lambda _: Reply(200, b"ok\n")) as stub:
        assert check(config(port_of(stub.url)), "/healthz") == ExitStatus.OK
        assert [r.path for r in stub.requests] == ["/healthz"]
    assert capsys.readouterr().out.strip().endswith("/healthz: ok")


def test_unhealthy_with_the_reason_on_another_answer(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(lambda _: Reply(503, b"not ready: no subscription\n")) as stub:
        assert check(config(port_of(stub.url)), "/readyz") == ExitStatus.FATAL
    assert "HTTP 503 not ready: no subscription" in capsys.readouterr().err


def test_unhealthy_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    assert check(config(free_port()), "/healthz") == ExitStatus.FATAL
    assert "ConnectionRefusedError" in capsys.readouterr().err


def test_a_wildcard_bind_is_asked_on_loopback() -> None:
    assert metrics_address(config(8000, "0.0.0.0")) == ("127.0.0.1", 8000)
    assert metrics_address(config(8000, "::")) == ("::1", 8000)
    assert metrics_address(config(9000, "127.0.0.2")) == ("127.0.0.2", 9000)

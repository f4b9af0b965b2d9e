"""Settings that guard secrets and peers (issue 22): X-Ray settings checked up front, passwords in
URLs treated as secrets, the hosts the bearer token may go to."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from shared import config
from shared.exits import ExitStatus
from tests.helpers import ROOT, probe_cmd

LOCAL = {"ORIGO_ENVIRONMENT": "local", "PROBE_CONFIG": "/nonexistent-probe.yaml"}


def load(**env: str) -> config.Config:
    return config.load({**LOCAL, "PROBE_CONFIG": str(ROOT / "probe.yaml"), **env})


def check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    names = {f.env for f in config.FIELDS} | {f.file_env for f in config.FIELDS} | {"AWS_XRAY_DAEMON_ADDRESS"}
    full = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("PROBE_")}
    full.update(ORIGO_ENVIRONMENT="local", PROBE_DB_PATH=str(tmp_path / "p.sqlite3"), **env)
    return subprocess.run(probe_cmd("config", "check"), env=full, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("address", ["bogus", "127.0.0.1:notaport", "tcp:127.0.0.1:2000"])
def test_a_bad_xray_daemon_address_fails_config_check_with_one_line(tmp_path: Path, address: str) -> None:
    result = check(tmp_path, AWS_XRAY_SDK_ENABLED="true", AWS_XRAY_DAEMON_ADDRESS=address)
    assert result.returncode == ExitStatus.CONFIG, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "AWS_XRAY_DAEMON_ADDRESS" in line and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "rules",
    [
        {"version": 2, "rules": []},  # no default rule
        {"version": 7, "default": {"fixed_target": 1, "rate": 1.0}, "rules": []},
        {"version": 2, "default": {"fixed_target": -1, "rate": 1.0}, "rules": []},
        {"version": 2, "default": {"fixed_target": 1, "rate": 1.0}, "rules": [{"description": "x"}]},
    ],
)
def test_bad_xray_sampling_rules_fail_config_check_with_one_line(tmp_path: Path, rules: dict) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    result = check(tmp_path, AWS_XRAY_SDK_ENABLED="true", XRAY_SAMPLING_RULES=str(path))
    assert result.returncode == ExitStatus.CONFIG, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "XRAY_SAMPLING_RULES" in line and "Traceback" not in result.stderr


def test_good_xray_settings_pass(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"version": 2, "default": {"fixed_target": 1, "rate": 0.5}, "rules": []}))
    address = "tcp:127.0.0.1:2000 udp:127.0.0.1:2000"
    result = check(
        tmp_path, AWS_XRAY_SDK_ENABLED="true", XRAY_SAMPLING_RULES=str(path), AWS_XRAY_DAEMON_ADDRESS=address
    )
    assert result.returncode == ExitStatus.OK, result.stderr


def test_a_password_in_a_url_is_a_secret_for_the_log_filter_and_redacted_in_config_check(tmp_path: Path) -> None:
    url = "http://probe:pw-in-url-77@127.0.0.1:9/event-collector/event/{dataset_id}/{version}"
    cfg = load(COLLECTOR_URL=url)
    assert "pw-in-url-77" in cfg.secrets()
    result = check(tmp_path, COLLECTOR_URL=url)
    assert result.returncode == ExitStatus.OK and "pw-in-url-77" not in result.stdout + result.stderr


def test_the_token_hosts_default_to_the_collector_urls_host_and_can_be_listed() -> None:
    url = "https://user:pw@API.example.org:8443/event-collector/event/{dataset_id}/{version}"
    assert load(COLLECTOR_URL=url).token_hosts() == ("api.example.org:8443",)
    assert load(COLLECTOR_URL="https://api.example.org/x").token_hosts() == ("api.example.org",)
    listed = load(COLLECTOR_TOKEN_HOSTS=" a.example.org, B.example.org:443 ,")
    assert listed.token_hosts() == ("a.example.org", "b.example.org:443")
    assert config.url_host("http://[::1]:8080/x") == "[::1]:8080" and config.url_host("not a url") == ""


def test_a_daemon_host_that_does_not_resolve_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK would resolve it for every segment and log a traceback each time. In-process, with
    getaddrinfo answering as for an unknown name, so that no DNS query leaves the machine."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "daemon.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(config.ConfigError, match=r"AWS_XRAY_DAEMON_ADDRESS.*does not resolve"):
        load(AWS_XRAY_SDK_ENABLED="true", AWS_XRAY_DAEMON_ADDRESS="daemon.test:2000")
    assert load(AWS_XRAY_SDK_ENABLED="true", AWS_XRAY_DAEMON_ADDRESS="tcp:127.0.0.1:2000 udp:127.0.0.1:2000")


@pytest.mark.parametrize(
    ("setting", "value", "names"),
    [
        ("METRICS_HOST", "silent.test", "METRICS_HOST"),
        ("AWS_XRAY_DAEMON_ADDRESS", "silent.test:2000", "AWS_XRAY_DAEMON_ADDRESS"),
    ],
)
def test_a_name_whose_lookup_never_answers_is_refused_within_the_lookup_deadline(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str, names: str
) -> None:
    """A DNS server that never answers must not hang `probe run` or `config check`: the lookup
    (which cannot be interrupted) is waited for only until LOOKUP_SECONDS."""
    import socket
    import threading
    import time

    from shared import resolve

    real, release = socket.getaddrinfo, threading.Event()

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "silent.test":
            release.wait(30)  # a resolver that never answers (released when the test ends)
            raise socket.gaierror(socket.EAI_AGAIN, "no answer")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(resolve, "LOOKUP_SECONDS", 0.5)
    extra = {"AWS_XRAY_SDK_ENABLED": "true"} if setting.startswith("AWS") else {}
    began = time.monotonic()
    try:
        with pytest.raises(config.ConfigError, match=names):
            load(**{setting: value}, **extra)
    finally:
        release.set()
    assert time.monotonic() - began < 0.5 * 10  # the lookup would have taken 30 s


def _bomb(levels: int = 8) -> str:
    """YAML whose aliases expand to 9**(levels+1) values in a few hundred bytes (the "billion laughs")."""
    lines = ["sender:", "  event_interval_seconds:", "    - &a0 [" + ",".join(['"lol"'] * 9) + "]"]
    lines += [f"    - &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", ["aliases", "deep", "large", "fifo"])
def test_a_hostile_config_file_is_one_error_line_at_once(tmp_path: Path, case: str) -> None:
    """The configuration is input like any other: a file that expands (aliases), nests, grows or never
    ends took `config check` past 3 GB and 60 s, raised a RecursionError traceback, or blocked for good."""
    path = tmp_path / "probe.yaml"
    if case == "aliases":
        path.write_text(_bomb())
    elif case == "deep":
        path.write_text("sender:\n  event_interval_seconds: " + "[" * 20000 + "]" * 20000 + "\n")
    elif case == "large":
        path.write_text("# " + "x" * (config.MAX_CONFIG_FILE_BYTES + 10) + "\n")
    else:
        os.mkfifo(path)  # nobody ever writes to it
    with pytest.raises(config.ConfigError, match=str(path)):
        config.load({**LOCAL, "PROBE_CONFIG": str(path)})


@pytest.mark.timeout(60)
def test_sampling_rules_that_are_a_fifo_or_too_large_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.json"
    os.mkfifo(fifo)
    with pytest.raises(config.ConfigError, match=r"xray_sampling_rules|XRAY_SAMPLING_RULES"):
        load(XRAY_ENABLED="true", XRAY_SAMPLING_RULES=str(fifo))
    large = tmp_path / "large.json"
    large.write_text('{"version": 2, "rules": [], "pad": "' + "x" * config.MAX_CONFIG_FILE_BYTES + '"}')
    with pytest.raises(config.ConfigError, match=r"xray_sampling_rules|XRAY_SAMPLING_RULES"):
        load(XRAY_ENABLED="true", XRAY_SAMPLING_RULES=str(large))

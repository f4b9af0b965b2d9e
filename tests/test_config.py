"""Configuration: parsing, precedence, one-line errors naming the key, redaction."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shared import config
from shared.exits import ExitStatus
from tests.helpers import ROOT, probe_cmd

BASE = {"PROBE_CONFIG": str(ROOT / "probe.yaml"), "ORIGO_ENVIRONMENT": "local"}


def load(**env: str) -> config.Config:
    return config.load({**BASE, **env})


def error(**env: str) -> str:
    with pytest.raises(config.ConfigError) as info:
        load(**env)
    return str(info.value)


def test_the_shipped_defaults_are_a_real_run_and_stop_at_once_naming_every_missing_setting() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load({"PROBE_CONFIG": str(ROOT / "probe.yaml")})
    message = str(info.value)
    assert "ORIGO_ENVIRONMENT=dev" in message
    for name in ("WEBHOOK_TOKEN", "ORIGO_CLIENT_ID", "ORIGO_CLIENT_SECRET"):
        assert name in message
    assert "\n" not in message


def test_local_points_at_the_emulator_with_demo_credentials() -> None:
    cfg = load()
    assert cfg.environment == "local"
    assert cfg.collector_endpoint() == "http://127.0.0.1:8081/event-collector/event/probe-dataset/1"
    assert cfg.websocket_url == "ws://127.0.0.1:8081/event-data-subscription"
    assert (cfg.keycloak_server, cfg.keycloak_realm) == ("http://127.0.0.1:8081/auth", "api-catalog")
    assert cfg.event_interval_seconds == 10.0


def test_the_demo_profile_has_its_own_store_beside_the_real_one() -> None:
    demo = config.load({"PROBE_CONFIG": str(ROOT / "deploy" / "demo.yaml")})
    real = load()
    assert demo.environment == "local" and demo.event_interval_seconds == 1.0 and demo.log_events
    assert [d.name for d in demo.datasets] == ["probe-dataset", "probe-orders"]  # make run shows the list
    assert demo.db_path == str(ROOT / "var" / "demo" / "probe.sqlite3") != real.db_path
    assert real.db_path == str(ROOT / "var" / "probe.sqlite3")  # relative to the config file, from any directory


def test_original_environment_variables_keep_their_meaning() -> None:
    cfg = load(
        ORIGO_ENVIRONMENT="dev",
        ORIGO_CLIENT_ID="my-client",
        ORIGO_CLIENT_SECRET="s3cret-value",
        WEBHOOK_TOKEN="tok-12345",
        EVENT_INTERVAL_SECONDS="0.25",
        MAX_CONSECUTIVE_ERRORS="3",
        DATASET_ID="ds",
        DATASET_VERSION="2",
        KEYCLOAK_REALM="other",
        AUTHORIZER_API="https://authorizer.example/",
        AWS_XRAY_SDK_ENABLED="true",
    )
    assert cfg.collector_endpoint() == "https://api.data-dev.oslo.systems/event-collector/event/ds/2"
    assert cfg.websocket_url == "wss://ws.data-dev.oslo.systems/event-data-subscription"
    assert (cfg.keycloak_server, cfg.keycloak_realm) == ("https://login-test.oslo.kommune.no/auth", "other")
    assert (cfg.event_interval_seconds, cfg.max_consecutive_errors) == (0.25, 3)
    assert cfg.client_id == "my-client" and cfg.xray_enabled is True


def test_prod_urls_and_explicit_overrides() -> None:
    cfg = load(
        ORIGO_ENVIRONMENT="prod",
        ORIGO_CLIENT_ID="c",
        ORIGO_CLIENT_SECRET="s3cret",
        WEBHOOK_TOKEN="t0ken",
        COLLECTOR_URL="http://127.0.0.1:9/",
    )
    assert cfg.websocket_url == "wss://ws.data.oslo.systems/event-data-subscription"
    assert cfg.collector_endpoint() == "http://127.0.0.1:9/"  # the old stand-in's POST /


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"EVENT_INTERVAL_SECONDS": "abc"}, "EVENT_INTERVAL_SECONDS"),
        ({"EVENT_INTERVAL_SECONDS": "0"}, "EVENT_INTERVAL_SECONDS"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"MAX_CONSECUTIVE_ERRORS": "1.5"}, "MAX_CONSECUTIVE_ERRORS"),
        ({"WEBSOCKET_URL": "http://x/"}, "WEBSOCKET_URL"),
        ({"COLLECTOR_URL": "ftp://x/"}, "COLLECTOR_URL"),
        ({"COLLECTOR_URL": "http://x/{dataset}"}, "COLLECTOR_URL"),
        ({"ORIGO_ENVIRONMENT": "staging"}, "ORIGO_ENVIRONMENT"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"AWS_XRAY_SDK_ENABLED": "maybe"}, "AWS_XRAY_SDK_ENABLED"),
        ({"ORIGO_ENVIRONMENT": "dev", "WEBHOOK_TOKEN": "t0ken"}, "ORIGO_CLIENT_ID"),
        ({"ORIGO_ENVIRONMENT": "dev", "ORIGO_CLIENT_ID": "c", "WEBHOOK_TOKEN": "t0ken"}, "ORIGO_CLIENT_SECRET"),
        ({"ORIGO_ENVIRONMENT": "dev", "AUTH_ENABLED": "false"}, "WEBHOOK_TOKEN"),
        ({"PONG_TIMEOUT_SECONDS": "20", "PING_INTERVAL_SECONDS": "10"}, "PONG_TIMEOUT_SECONDS"),
        ({"LOSS_TIMEOUT_SECONDS": "5", "POST_TIMEOUT_SECONDS": "10"}, "LOSS_TIMEOUT_SECONDS"),
        ({"LATENCY_BUCKETS": "1,0.5"}, "LATENCY_BUCKETS"),
        ({"ORIGO_CLIENT_SECRET_FILE": "/nonexistent/secret"}, "ORIGO_CLIENT_SECRET_FILE"),
        ({"PROBE_DB_PATH": "/x/data/probe.sqlite3", "PROMETHEUS_MULTIPROC_DIR": "/x/data"}, "PROMETHEUS_MULTIPROC_DIR"),
        ({"PROBE_DB_PATH": "/x/data/probe.sqlite3", "PROMETHEUS_MULTIPROC_DIR": "/x"}, "must not contain the store"),
        ({"PROMETHEUS_MULTIPROC_DIR": ""}, "PROMETHEUS_MULTIPROC_DIR"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/"}, "PROMETHEUS_MULTIPROC_DIR"),
        ({"PROBE_DB_PATH": ":memory:"}, "PROBE_DB_PATH"),
        ({"PROBE_DB_PATH": ""}, "PROBE_DB_PATH"),
    ],
)
def test_bad_values_name_the_key_in_one_line(env: dict[str, str], names: str) -> None:
    message = error(**env)
    assert names in message
    assert "\n" not in message


def test_dev_without_secrets_is_fine_when_auth_is_off() -> None:
    cfg = load(ORIGO_ENVIRONMENT="dev", AUTH_ENABLED="false", WEBHOOK_TOKEN="t0ken")
    assert cfg.auth_enabled is False


def test_yaml_errors_name_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("sender:\n  event_interval_seconds: fast\n")
    message = error(PROBE_CONFIG=str(path))
    assert "sender.event_interval_seconds" in message and str(path) in message
    path.write_text("sender:\n  interval: 3\n")
    message = error(PROBE_CONFIG=str(path))
    assert "sender.interval" in message and "unknown setting" in message
    path.write_text("sender: [1\n")
    assert "not valid YAML" in error(PROBE_CONFIG=str(path))
    assert "cannot read" in error(PROBE_CONFIG=str(tmp_path / "missing.yaml"))


def test_env_overrides_yaml_and_fractions_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("sender:\n  event_interval_seconds: 5\ndataset:\n  id: from-yaml\n")
    assert load(PROBE_CONFIG=str(path)).event_interval_seconds == 5
    cfg = load(PROBE_CONFIG=str(path), EVENT_INTERVAL_SECONDS="0.02")
    assert cfg.event_interval_seconds == 0.02 and cfg.dataset_id == "from-yaml"


def test_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("file-secret-value\n")
    token = tmp_path / "token"
    token.write_text("file-token-value")
    cfg = load(ORIGO_CLIENT_SECRET_FILE=str(secret), WEBHOOK_TOKEN_FILE=str(token))
    assert (cfg.client_secret, cfg.webhook_token) == ("file-secret-value", "file-token-value")


def run_check(**env: str) -> subprocess.CompletedProcess:
    names = {f.env for f in config.FIELDS} | {f.file_env for f in config.FIELDS}
    full = {k: v for k, v in os.environ.items() if k not in names}
    full.update(BASE, **env)
    return subprocess.run(probe_cmd("config", "check"), env=full, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_config_check_exits_2_with_one_line_naming_the_variable() -> None:
    result = run_check(EVENT_INTERVAL_SECONDS="abc")
    assert result.returncode == ExitStatus.CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "EVENT_INTERVAL_SECONDS" in lines[0]
    assert result.stdout == ""


def test_config_check_never_prints_secrets() -> None:
    client_secret, token = "Sup3r-S3cret-Value", "11111111-2222-4333-8444-555555555555"
    result = run_check(ORIGO_CLIENT_SECRET=client_secret, WEBHOOK_TOKEN=token)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout and "<redacted>" in result.stdout
    assert client_secret not in result.stdout + result.stderr
    assert token not in result.stdout + result.stderr
    # a secret that fails validation is not echoed either
    result = run_check(
        ORIGO_ENVIRONMENT="dev", ORIGO_CLIENT_ID="c", WEBHOOK_TOKEN="", ORIGO_CLIENT_SECRET=client_secret
    )
    assert result.returncode == ExitStatus.CONFIG and client_secret not in result.stderr


def test_the_settings_page_table_is_the_generated_one() -> None:
    result = subprocess.run(probe_cmd("config", "docs"), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.strip() in (ROOT / "docs" / "settings.md").read_text(), "docs/settings.md: run `make docs`"


def test_unknown_and_misspelt_variables_are_named_with_the_closest_setting() -> None:
    cfg = load(EVENT_INTERVAL_SECOND="5", PROBE_TYPO="x", HOME="/root", ORIGO_CLIENTID="c")
    warnings = "\n".join(cfg.warnings)
    assert (
        "EVENT_INTERVAL_SECOND is not a setting of the probe (ignored); did you mean EVENT_INTERVAL_SECONDS?"
        in warnings
    )
    assert "PROBE_TYPO is not a setting" in warnings and "did you mean ORIGO_CLIENT_ID?" in warnings
    assert "HOME" not in warnings
    assert cfg.event_interval_seconds == 10.0  # the misspelt one changed nothing


def test_a_setting_without_its_unit_is_named_with_the_setting() -> None:
    """LOSS_TIMEOUT=5 or RETENTION=3600 is a setting with its unit left off, not someone else's variable."""
    cfg = load(LOSS_TIMEOUT="5", RETENTION="3600", MAX_MESSAGE="4096", LOG="x")
    warnings = "\n".join(cfg.warnings)
    assert "LOSS_TIMEOUT is not a setting of the probe (ignored); did you mean LOSS_TIMEOUT_SECONDS?" in warnings
    assert "did you mean RETENTION_SECONDS?" in warnings and "did you mean MAX_MESSAGE_BYTES?" in warnings
    assert "LOG " not in warnings and cfg.loss_timeout_seconds != 5


def test_the_original_services_names_are_read_with_a_warning_or_ignored_with_a_reason() -> None:
    cfg = load(
        OKDATA_ENVIRONMENT="local",
        OKDATA_CLIENT_ID="old-client",
        DISMISS_EVENT_TIMEOUT_SECONDS="86400",
        CLEAN_EVENTS_INTERVAL_SECONDS="60",
        LOCAL_RUN="true",
    )
    assert cfg.client_id == "old-client" and cfg.loss_timeout_seconds == 86400
    assert cfg.origin["client_id"] == "environment variable OKDATA_CLIENT_ID"
    warnings = "\n".join(cfg.warnings)
    assert "OKDATA_CLIENT_ID is the original service's name of ORIGO_CLIENT_ID" in warnings
    assert "CLEAN_EVENTS_INTERVAL_SECONDS is not used by this probe (ignored)" in warnings
    assert "LOCAL_RUN is not used" in warnings and "ORIGO_ENVIRONMENT=local" in warnings
    assert "ORIGO_CLIENT_ID and OKDATA_CLIENT_ID" not in warnings
    message = error(ORIGO_CLIENT_ID="new", OKDATA_CLIENT_ID="old")
    assert "OKDATA_CLIENT_ID and ORIGO_CLIENT_ID" in message and "disagree" in message


def test_placeholders_of_the_example_file_are_refused() -> None:
    message = error(
        ORIGO_ENVIRONMENT="dev",
        ORIGO_CLIENT_ID="your-client-id",
        ORIGO_CLIENT_SECRET="replace-me",
        WEBHOOK_TOKEN="t0ken-value",
    )
    assert "placeholder of probe.env.example" in message and "replace-me" not in message


def test_yaml_keys_written_twice_and_numbers_for_texts_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("sender:\n  event_interval_seconds: 5\n  event_interval_seconds: 6\n")
    message = error(PROBE_CONFIG=str(path))
    assert "duplicate key 'event_interval_seconds'" in message and "line 3" in message
    path.write_text("dataset:\n  version: 1.10\n")
    message = error(PROBE_CONFIG=str(path))
    assert "dataset.version" in message and '"1.10"' in message
    path.write_text('dataset:\n  version: "1.10"\n')
    assert load(PROBE_CONFIG=str(path)).dataset_version == "1.10"


def test_settings_that_cannot_work_are_refused() -> None:
    assert "MAX_MESSAGE_BYTES" in error(MAX_MESSAGE_BYTES="100")
    assert "DATASET_VERSION" in error(DATASET_VERSION="")
    assert "KEYCLOAK_REALM" in error(KEYCLOAK_REALM=" ")


def test_secret_files_that_are_not_files_or_not_text_are_one_line_and_show_nothing(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in error(ORIGO_CLIENT_SECRET_FILE=str(fifo))  # and did not block
    assert "not a regular file" in error(WEBHOOK_TOKEN_FILE=str(tmp_path))
    assert "not a regular file" in error(WEBHOOK_TOKEN_FILE="/dev/zero")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfesecret-bytes")
    message = error(WEBHOOK_TOKEN_FILE=str(binary))
    assert "not UTF-8" in message and "secret-bytes" not in message


def test_config_check_shows_where_each_value_came_from_and_hides_url_credentials() -> None:
    env = {
        **os.environ,
        **BASE,
        "EVENT_INTERVAL_SECONDS": "2",
        "WEBSOCKET_URL": "wss://probe:hunter2@ws.example.test/sub?webhook_token=abc123&x=1",
        "EVENT_INTERVAL_SECOND": "3",
    }
    result = subprocess.run(probe_cmd("config", "check"), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"config file: {ROOT / 'probe.yaml'}" in result.stdout
    line = next(x for x in result.stdout.splitlines() if x.startswith("event_interval_seconds"))
    assert "2.0" in line and "environment variable" in line
    assert "hunter2" not in result.stdout and "abc123" not in result.stdout and "x=1" in result.stdout
    assert "did you mean EVENT_INTERVAL_SECONDS" in result.stderr


def test_config_check_into_a_closed_pipe_exits_quietly() -> None:
    env = {**os.environ, **BASE}
    shell = f"{' '.join(probe_cmd('config', 'check'))} | head -1"
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {shell}"], env=env, capture_output=True, text=True)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_a_collector_url_without_the_dataset_placeholder_is_said_not_silently_used() -> None:
    """Without {dataset_id} every dataset posts to the URL as given: said once, by name, the URL not shown."""
    fixed = load(COLLECTOR_URL="http://user:pw@127.0.0.1:9/event-collector/event/my-ds/1")
    said = [w for w in fixed.warnings if "no {dataset_id} placeholder" in w]
    assert len(said) == 1 and fixed.datasets[0].name in said[0] and "pw" not in said[0]
    templated = load(COLLECTOR_URL="http://127.0.0.1:9/event-collector/event/{dataset_id}/{version}")
    assert not [w for w in templated.warnings if "placeholder" in w]

"""The `datasets:` list: each entry's settings, what it inherits, and one-line errors naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import config


def load_yaml(tmp_path: Path, text: str, **env: str) -> config.Config:
    path = tmp_path / "probe.yaml"
    path.write_text(text)
    return config.load({"PROBE_CONFIG": str(path), **env})


def error_of(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(config.ConfigError) as info:
        load_yaml(tmp_path, text, **env)
    message = str(info.value)
    assert "\n" not in message
    return message


LIST = """environment: local
sender:
  event_interval_seconds: 5
  payload_bytes: 300
datasets:
  - id: orders
  - id: orders
    name: orders-batch
    collector_url: "http://127.0.0.1:8081/event-collector/events/{dataset_id}/{version}"
  - id: clicks
    version: "2"
    interval_seconds: 0.5
    loss_timeout_seconds: 60
    payload_bytes: 4000
"""


def test_entries_take_what_they_leave_out_from_the_top_level(tmp_path: Path) -> None:
    cfg = load_yaml(tmp_path, LIST, WEBHOOK_TOKEN="read-token-1")
    orders, batch, clicks = cfg.datasets
    assert (orders.name, orders.id, orders.version, orders.interval_seconds, orders.payload_bytes) == (
        "orders",
        "orders",
        "1",
        5.0,
        300,
    )
    assert orders.webhook_token == batch.webhook_token == "read-token-1"
    assert not orders.posts_a_list() and batch.posts_a_list()
    assert batch.collector_endpoint() == "http://127.0.0.1:8081/event-collector/events/orders/1"
    assert (clicks.version, clicks.interval_seconds, clicks.loss_timeout_seconds, clicks.payload_bytes) == (
        "2",
        0.5,
        60.0,
        4000,
    )
    assert "read-token-1" in cfg.secrets()
    assert all(d["webhook_token"] == config.REDACTED for d in cfg.redacted()["datasets"])


def test_the_single_dataset_form_is_a_list_of_one_named_by_its_id() -> None:
    cfg = config.load({"ORIGO_ENVIRONMENT": "local", "DATASET_ID": "mine", "DATASET_VERSION": "3"}, path="")
    (only,) = cfg.datasets
    assert (only.name, only.id, only.version, only.webhook_token) == ("mine", "mine", "3", config.LOCAL_WEBHOOK_TOKEN)


def test_a_token_file_per_entry_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "clicks.token").write_text("clicks-secret\n")
    text = "environment: local\ndatasets:\n  - id: a\n  - id: clicks\n    webhook_token_file: clicks.token\n"
    a, clicks = load_yaml(tmp_path, text).datasets
    assert clicks.webhook_token == "clicks-secret" and a.webhook_token == config.LOCAL_WEBHOOK_TOKEN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("datasets: []\n", "datasets (in"),
        ("datasets: {id: a}\n", "expected a list of entries"),
        ("datasets:\n  - version: '1'\n", "datasets[0] (in"),
        ("datasets:\n  - id: a\n  - id: b\n    intervall_seconds: 3\n", "'intervall_seconds' is not a key"),
        ("datasets:\n  - id: a\n  - id: a\n", "name 'a' is also the name of datasets[0]"),
        ("datasets:\n  - id: a\n    interval_seconds: fast\n", "datasets[0] (in"),
        ("datasets:\n  - id: a\n    name: 'has space'\n", "is not a usable name"),
        ("datasets:\n  - id: a\n    payload_bytes: 2000000\n", "payload_bytes"),
        ("datasets:\n  - id: a\n    payload_bytes: 100000\n", "MAX_MESSAGE_BYTES"),
        ("datasets:\n  - id: a\n    loss_timeout_seconds: 5\n", "must exceed POST_TIMEOUT_SECONDS"),
        ("datasets:\n  - id: a\n    collector_url: 'http://x/{nope}'\n", "only the placeholders"),
        ("dataset:\n  id: a\ndatasets:\n  - id: b\n", "use one form"),
        # the top-level template is a setting too, whether or not an entry inherits it
        (
            "collector:\n  url: 'http://x/{nope}'\ndatasets:\n  - id: a\n    collector_url: 'http://y/'\n",
            "collector.url (in",
        ),
        ("datasets:\n" + "".join(f"  - id: d{i}\n" for i in range(201)), "at most 200"),
    ],
)
def test_a_bad_entry_is_refused_in_one_line_naming_it(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, "environment: local\n" + text)
    assert expected in message, message


def test_a_missing_token_names_the_entry(tmp_path: Path) -> None:
    message = error_of(tmp_path, "environment: dev\nauth:\n  enabled: false\ndatasets:\n  - id: a\n")
    assert message.startswith("datasets[0] (a, in ") and "webhook_token is missing" in message


def test_dataset_id_in_the_environment_with_a_list_is_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, "environment: local\ndatasets:\n  - id: a\n", DATASET_ID="b")
    assert "DATASET_ID (environment variable)" in message and "use one form" in message

"""The schema: every setting is one row, and everything else (Dataset, the entry keys, the parsers,
the docs' table) follows from the rows, so that adding a setting is one row plus its check."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared import config
from shared.config.fields import rows_of, setting
from shared.config.schema import DATASET_FIELDS


def test_every_setting_is_one_row_of_config_and_a_dataset_is_made_of_the_per_dataset_rows() -> None:
    settings = [f.name for f in dataclasses.fields(config.Config) if f.metadata]
    assert [f.name for f in config.FIELDS] == settings
    assert len({f.env for f in config.FIELDS}) == len({f.yaml for f in config.FIELDS}) == len(settings)
    per_dataset = {f.entry: f.name for f in DATASET_FIELDS}
    assert per_dataset == {
        "id": "dataset_id",
        "version": "dataset_version",
        "collector_url": "collector_url",
        "websocket_url": "websocket_url",
        "webhook_token": "webhook_token",
        "interval_seconds": "event_interval_seconds",
        "payload_bytes": "payload_bytes",
        "loss_timeout_seconds": "loss_timeout_seconds",
    }
    assert [f.name for f in dataclasses.fields(config.Dataset)] == ["name", *per_dataset]
    assert {k: v for k, v in config.DATASET_KEYS.items() if v} == per_dataset
    assert "webhook_token_file" in config.DATASET_KEYS  # a secret's entry may name its file


def test_a_row_is_a_whole_setting_its_kind_from_the_type_its_bounds_and_help_in_the_docs_table() -> None:
    @dataclass(frozen=True)
    class Two:
        retries: int = setting("collector.retries", "POST_RETRIES", 2, "Retries of one post.", within=(0, 10))
        grace: float = setting("listener.grace_seconds", "GRACE_SECONDS", 1.0, "Grace.", above=0, maximum=60)
        mode: str = setting("log.mode", "LOG_MODE", "a", "Mode.", choices=("a", "b"))

    retries, grace, mode = rows_of(Two)
    assert (retries.kind, grace.kind, mode.kind) == ("int", "float", "choice")
    assert retries.parse("3") == 3 and grace.parse(0.5) == 0.5 and mode.parse("b") == "b"
    for row, raw in ((retries, "11"), (retries, "1.5"), (grace, "0"), (grace, "61"), (mode, "c")):
        with pytest.raises(ValueError):
            row.parse(raw)
    assert retries.expected() == "a whole number >= 0 and <= 10"
    assert grace.expected() == "a number (fractions allowed) > 0 and <= 60"


def test_the_single_dataset_form_and_a_list_of_one_entry_are_validated_alike(tmp_path: Path) -> None:
    """One validator for every dataset: the same fault is refused in both forms, each naming what
    the operator wrote (the variable, or the entry and its key)."""
    with pytest.raises(config.ConfigError, match=r"^PAYLOAD_BYTES \(environment variable\) = 100000: "):
        config.load({"ORIGO_ENVIRONMENT": "local", "PAYLOAD_BYTES": "100000"}, path="")
    path = tmp_path / "probe.yaml"
    path.write_text("environment: local\ndatasets:\n  - id: a\n    payload_bytes: 100000\n")
    with pytest.raises(config.ConfigError, match=r"^datasets\[0\] \(a, in .*\): payload_bytes = 100000: "):
        config.load({"PROBE_CONFIG": str(path)})

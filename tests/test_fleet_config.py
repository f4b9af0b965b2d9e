"""A fleet's settings: shards of one shared datasets list (PROBE_SHARD), groups and locations."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from shared import config, shard
from shared.exits import ExitStatus
from tests.helpers import ROOT, probe_cmd

NINE = "environment: local\ndatasets:\n" + "".join(f"  - id: ds-{i}\n" for i in range(1, 10))


def load(tmp_path: Path, text: str = NINE, **env: str) -> config.Config:
    path = tmp_path / "probe.yaml"
    path.write_text(text)
    return config.load({"PROBE_CONFIG": str(path), **env})


def error_of(tmp_path: Path, text: str = NINE, **env: str) -> str:
    with pytest.raises(config.ConfigError) as info:
        load(tmp_path, text, **env)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_three_shards_over_nine_datasets_each_watch_a_third_and_together_all(tmp_path: Path) -> None:
    parts = [load(tmp_path, PROBE_SHARD=f"{i}/3") for i in range(3)]
    names = [[ds.name for ds in cfg.datasets] for cfg in parts]
    assert [len(n) for n in names] == [3, 3, 3]
    assert sorted(n for part in names for n in part) == [
        f"ds-{i}" for i in range(1, 10)
    ]  # disjoint, and the union is all nine
    for cfg in parts:  # every instance still knows the whole list (to export what it does not watch)
        assert [ds.name for ds in cfg.configured] == [f"ds-{i}" for i in range(1, 10)]
    whole = load(tmp_path)
    assert whole.datasets == whole.configured and len(whole.datasets) == 9


def test_the_assignment_is_prometheus_hashmod_and_stable_across_processes() -> None:
    # Prometheus's hashmod: the MD5 of the value, its last 8 bytes big-endian, mod n.
    for name in ("ds-1", "orders", "ærlig/ds:1"):
        expected = int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % 7
        assert shard.shard_of(name, 7) == expected
    script = "from shared import shard; print([shard.shard_of(f'ds-{i}', 5) for i in range(50)])"
    runs = {
        subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", script],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1  # not Python's salted hash()


def test_entries_of_one_dataset_id_stay_on_one_shard(tmp_path: Path) -> None:
    text = (
        "environment: local\ndatasets:\n"
        + "".join(f"  - {{id: shared-id, name: entry-{i}}}\n" for i in range(4))
        + "".join(f"  - id: ds-{i}\n" for i in range(1, 10))
    )
    holders = [
        i for i in range(3) if "entry-0" in {ds.name for ds in load(tmp_path, text, PROBE_SHARD=f"{i}/3").datasets}
    ]
    assert len(holders) == 1
    cfg = load(tmp_path, text, PROBE_SHARD=f"{holders[0]}/3")
    assert {f"entry-{i}" for i in range(4)} <= {ds.name for ds in cfg.datasets}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("3/3", "index must be 0 to 2"),
        ("-1/3", "expected i/n"),
        ("1/0", "must be 1 to 1000"),
        ("0/5000", "must be 1 to 1000"),
        ("0/1001", "must be 1 to 1000"),
        ("half", "expected i/n"),
        ("1/2/3", "expected i/n"),
    ],
)
def test_a_bad_shard_is_one_line_naming_the_setting(tmp_path: Path, value: str, says: str) -> None:
    message = error_of(tmp_path, PROBE_SHARD=value)
    assert message.startswith("PROBE_SHARD (environment variable)") and says in message


def test_a_shard_that_would_watch_nothing_is_refused_naming_the_setting(tmp_path: Path) -> None:
    one = "environment: local\ndatasets:\n  - id: ds-1\n"
    empty = next(i for i in range(4) if i != shard.shard_of("ds-1", 4))
    message = error_of(tmp_path, one, PROBE_SHARD=f"{empty}/4")
    assert "PROBE_SHARD" in message and "watches none of the 1 datasets" in message
    yaml_form = one + f"fleet:\n  shard: {empty}/4\n"
    assert error_of(tmp_path, yaml_form).startswith("fleet.shard (in ")


def test_group_and_location_default_to_none_and_the_host_name_and_must_be_label_values(tmp_path: Path) -> None:
    cfg = load(tmp_path)
    assert cfg.group == "" and cfg.shard == ""
    assert cfg.location and cfg.location == config.default_location()
    assert cfg.location.split(".")[0] in socket.gethostname() or cfg.location == "unknown"
    cfg = load(tmp_path, PROBE_GROUP="orders-pair", PROBE_LOCATION="eu-north-1a")
    assert (cfg.group, cfg.location) == ("orders-pair", "eu-north-1a")
    for name in ("PROBE_GROUP", "PROBE_LOCATION"):
        for bad in ("two words", "-dash", "x" * 101, 'quote"'):
            message = error_of(tmp_path, **{name: bad})
            assert message.startswith(f"{name} (environment variable)")


def test_config_check_lists_the_datasets_of_the_shard(tmp_path: Path) -> None:
    path = tmp_path / "probe.yaml"
    path.write_text(NINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROBE_", "ORIGO_"))}
    listed: list[str] = []
    for i in range(3):
        result = subprocess.run(
            probe_cmd("config", "check"),
            env={**env, "PROBE_CONFIG": str(path), "PROBE_SHARD": f"{i}/3"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == ExitStatus.OK, result.stderr
        lines = result.stdout.splitlines()
        head = next(n for n, line in enumerate(lines) if line.startswith("datasets:"))
        assert lines[head].startswith(f"datasets: shard {i}/3 watches 3 of the 9")
        names = [line.split(":")[0].strip() for line in lines[head + 1 : head + 4]]
        assert all(n.startswith("ds-") for n in names)
        listed += names
    assert sorted(listed) == [f"ds-{i}" for i in range(1, 10)]


def test_every_instance_exports_the_whole_list_with_what_it_watches_and_who_owns_the_rest(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from shared import metrics

    cfg = load(tmp_path, PROBE_SHARD="1/3", PROBE_GROUP="shard-1", PROBE_LOCATION="node-7")
    metrics.describe_instance(cfg)
    mine = {ds.name for ds in cfg.datasets}
    for ds in cfg.configured:
        owner = f"{shard.shard_of(ds.id, 3)}/3"
        value = REGISTRY.get_sample_value("probe_dataset_watched", {"dataset": ds.name, "shard": owner})
        assert value == (1 if ds.name in mine else 0), ds.name
        assert (owner == "1/3") == (ds.name in mine)
    info = {"group": "shard-1", "location": "node-7", "shard": "1/3"}
    assert REGISTRY.get_sample_value("probe_instance_info", info) == 1

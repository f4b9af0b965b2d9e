"""The collectors as the sender wires them, in-process against scripted peers on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe_sender import wiring
from shared import config
from shared.tracing import NoTracer
from testkit.http_stub import Reply, sequence, serve

EVENT = {"app_id": "abcdef01", "seqno": 7, "time_sent": "2026-11-28T00:00:00.000000+00:00"}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def test_each_dataset_gets_the_proxy_the_environment_names_for_its_own_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY excepts 127.0.0.1: its dataset posts directly, the one on 127.0.0.2 through the
    proxy, whichever comes first in the list (the first's decision used to hold for all)."""
    with serve(sequence(Reply(200))) as direct, serve(sequence(Reply(200))) as proxy:
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.upper(), raising=False)
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.setenv(name, "127.0.0.1")
        path = tmp_path / "probe.yaml"
        path.write_text(
            "environment: local\n"
            "auth:\n  enabled: false\n"
            "datasets:\n"
            f"  - id: near\n    collector_url: '{direct.url}/event-collector/event/{{dataset_id}}/{{version}}'\n"
            "  - id: far\n    collector_url: 'http://127.0.0.2:9/event-collector/event/{dataset_id}/{version}'\n"
        )
        cfg = config.load({"PROBE_CONFIG": str(path)})
        session = wiring.session_for(cfg)
        results = [
            wiring.collector_for(cfg, ds, None, session, NoTracer()).post(dict(EVENT, dataset=ds.name))
            for ds in cfg.datasets
        ]
    assert [r.ok for r in results] == [True, True], results
    (near,) = direct.requests
    assert near.path == "/event-collector/event/near/1" and json.loads(near.body)["dataset"] == "near"
    (far,) = proxy.requests  # a proxy is asked for the whole URL
    assert far.path == "http://127.0.0.2:9/event-collector/event/far/1" and json.loads(far.body)["dataset"] == "far"

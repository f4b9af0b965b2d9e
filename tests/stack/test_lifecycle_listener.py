"""The lifecycle eventlistener's own protocol and file handling, held to supervisor's and prometheus_client's."""

from __future__ import annotations

import io
from pathlib import Path

from probe_stack.runtime.lifecycle_listener import LIVE_GAUGE_MODES, mark_process_dead, read_event


def test_the_live_gauge_modes_are_prometheus_clients() -> None:
    from prometheus_client import multiprocess

    assert set(LIVE_GAUGE_MODES) == set(multiprocess._LIVE_GAUGE_MULTIPROCESS_MODES)


def test_an_event_is_read_as_supervisor_childutils_reads_it() -> None:
    from supervisor import childutils

    payload = b"processname:sender groupname:sender from_state:RUNNING expected:0 pid:4242"
    header = (
        "ver:3.0 server:supervisor serial:7 pool:lifecycle poolserial:7 "
        f"eventname:PROCESS_STATE_EXITED len:{len(payload)}\n"
    )
    stream = io.BytesIO(header.encode() + payload + header.encode() + payload)
    event = read_event(stream)
    assert event is not None
    headers, fields = event
    theirs, _ = childutils.eventdata(payload.decode() + "\n")
    assert headers["eventname"] == "PROCESS_STATE_EXITED" and fields == theirs
    assert read_event(stream) is not None and read_event(stream) is None  # exactly one payload each


def test_only_the_dead_process_live_gauges_go(tmp_path: Path) -> None:
    names = [
        "gauge_livemostrecent_10.db",
        "gauge_liveall_10.db",
        "gauge_max_10.db",
        "counter_10.db",
        "gauge_liveall_11.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    mark_process_dead(10, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_10.db", "gauge_liveall_11.db", "gauge_max_10.db"]

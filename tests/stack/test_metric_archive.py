"""Dead processes' metric files folded into archives: the same numbers, a bounded directory,
and a fold cut short at any step neither loses nor doubles a count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from probe_stack.metrics import metric_archive
from probe_stack.metrics.metric_archive import JOURNAL, PENDING, archive_name, fold_dead, merge, recover
from tests.stack.test_folding_collector import samples, write


def key(labels: str = "ds") -> str:
    return mmap_key("m", "m", ["dataset"], [labels], "help")


def test_merge_adds_counters_and_keeps_the_right_gauge() -> None:
    for kind, expected in (
        ("counter", (5.0, 2.0)),
        ("histogram", (5.0, 2.0)),
        ("gauge_max", (3.0, 1.0)),
        ("gauge_min", (2.0, 2.0)),
        ("gauge_mostrecent", (2.0, 2.0)),
    ):
        values: dict = {}
        merge(kind, values, [(key(), 3.0, 1.0)])
        merge(kind, values, [(key(), 2.0, 2.0)])
        assert values == {key(): expected}, kind


def prometheus(metrics_dir: Path) -> dict[str, float]:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(metrics_dir))
    return samples(registry)


def test_folding_keeps_every_number_and_the_directory_stops_growing(tmp_path: Path) -> None:
    for step in range(1, 6):
        write(tmp_path, step)
    before = prometheus(tmp_path)
    files_per_process = len(list(tmp_path.iterdir())) // 5
    assert fold_dead(tmp_path, lambda pid: False) >= 5 * files_per_process - 5
    assert prometheus(tmp_path) == pytest.approx(before)
    # live gauges are the sweep's (mark_process_dead), not the archive's
    folded = lambda: sorted(p.name for p in tmp_path.iterdir() if "_live" not in p.name)  # noqa: E731
    kept = folded()
    assert all(name.endswith("_archive.db") for name in kept), kept
    for step in range(6, 12):  # six more restarts: still one archive per kind
        write(tmp_path, step)
        fold_dead(tmp_path, lambda pid: False)
    assert folded() == kept
    after = prometheus(tmp_path)
    assert after['probe_events_posted_total{dataset="ds"}'] == sum(range(1, 12))
    assert after['probe_last_event_sent_timestamp_seconds{dataset="ds"}'] == 1011


def test_a_living_process_is_never_folded(tmp_path: Path) -> None:
    write(tmp_path, 1)
    own = {p.name for p in tmp_path.iterdir()}
    assert fold_dead(tmp_path, lambda pid: True) == 0
    assert {p.name for p in tmp_path.iterdir()} == own


@pytest.mark.parametrize("swapped", [0, 1, 2])
def test_a_fold_cut_short_neither_loses_nor_doubles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swapped: int
) -> None:
    for step in (1, 2):
        write(tmp_path, step)
    fold_dead(tmp_path, lambda pid: False)
    write(tmp_path, 3)
    before = prometheus(tmp_path)
    real_replace, calls = os.replace, []

    def dies_after(src: str | Path, dst: str | Path) -> None:
        if str(src).endswith("_archive.db" + PENDING):  # an archive swapped in (not the journal)
            if len(calls) == swapped:
                raise KeyboardInterrupt  # the process dies here
            calls.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(metric_archive.os, "replace", dies_after)
    with pytest.raises(KeyboardInterrupt):
        fold_dead(tmp_path, lambda pid: False)
    monkeypatch.undo()
    assert (tmp_path / JOURNAL).exists()
    recover(tmp_path)
    assert prometheus(tmp_path) == pytest.approx(before)
    assert not list(tmp_path.glob("*" + PENDING)) and not (tmp_path / JOURNAL).exists()


def test_an_archive_is_read_by_prometheus_client_like_any_file(tmp_path: Path) -> None:
    store = MmapedDict(str(tmp_path / archive_name("counter")))
    store.write_value(mmap_key("probe_x", "probe_x_total", ["dataset"], ["ds"], "x"), 7.0, 0.0)
    store.close()
    assert prometheus(tmp_path) == {'probe_x_total{dataset="ds"}': 7.0}


def test_a_fold_cut_short_before_its_journal_counts_nothing_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for step in (1, 2):
        write(tmp_path, step)
    before = prometheus(tmp_path)
    real_replace = os.replace

    def dies_at_the_journal(src: str | Path, dst: str | Path) -> None:
        if str(dst).endswith(JOURNAL):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(metric_archive.os, "replace", dies_at_the_journal)
    with pytest.raises(KeyboardInterrupt):
        fold_dead(tmp_path, lambda pid: False)
    monkeypatch.undo()
    assert list(tmp_path.glob("*" + PENDING))  # the new archives and the journal, not committed
    recover(tmp_path)
    assert prometheus(tmp_path) == pytest.approx(before)
    assert not list(tmp_path.glob("*" + PENDING))

"""The metrics directory is emptied at every start, so only a directory of ours, and only our files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from probe_stack.metrics.metrics_dir import MARKER, MetricsDirBusy, MetricsDirError, hold, reset


def test_a_new_directory_is_created_and_marked(tmp_path: Path) -> None:
    path = tmp_path / "a" / "metrics"
    reset(path)
    assert [p.name for p in path.iterdir()] == [MARKER]


def test_our_directory_is_emptied_of_metric_files_only(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    reset(path)
    for name in ("counter_12.db", "gauge_livemostrecent_12.db", "histogram_7.db", "gauge_max_3.db"):
        (path / name).write_bytes(b"x")
    reset(path)
    assert [p.name for p in path.iterdir()] == [MARKER]


def test_a_directory_holding_anything_else_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "probe.sqlite3").write_bytes(b"precious")
    (tmp_path / "counter_1.db").write_bytes(b"x")
    with pytest.raises(MetricsDirError, match=r"not the probe's metrics \(e.g. probe.sqlite3\)"):
        reset(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_1.db", "probe.sqlite3"]


def test_a_foreign_directory_of_metric_files_is_not_ours_to_empty(tmp_path: Path) -> None:
    (tmp_path / "counter_1.db").write_bytes(b"x")
    with pytest.raises(MetricsDirError, match="not created by the probe"):
        reset(tmp_path)
    assert (tmp_path / "counter_1.db").exists()


def test_an_empty_directory_is_adopted_and_a_file_or_link_refused(tmp_path: Path) -> None:
    reset(tmp_path)
    assert (tmp_path / MARKER).exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(MetricsDirError, match="not a directory"):
        reset(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(MetricsDirError, match="not a directory"):
        reset(tmp_path / "link")


def test_a_directory_named_like_a_metric_file_is_refused_not_removed(tmp_path: Path) -> None:
    reset(tmp_path)
    (tmp_path / "counter_2.db").mkdir()
    with pytest.raises(MetricsDirError, match=r"counter_2\.db"):
        reset(tmp_path)
    assert (tmp_path / "counter_2.db").is_dir()


def test_a_held_directory_refuses_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    fd = hold(path)
    try:
        reset(path, "pid 4711, started now, store /s")
        with pytest.raises(MetricsDirBusy, match="pid 4711, started now, store /s"):
            hold(path)
    finally:
        os.close(fd)
    os.close(hold(path))  # released with its holder
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_the_metric_archives_and_an_unfinished_fold_are_ours_to_empty(tmp_path: Path) -> None:
    from probe_stack.metrics.metric_archive import JOURNAL, PENDING, archive_name

    reset(tmp_path)
    for name in (archive_name("counter"), archive_name("gauge_max") + PENDING, JOURNAL, "counter_5.db"):
        (tmp_path / name).write_bytes(b"x")
    reset(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [MARKER]

"""The SQLite store: identity, classification, fair loss judgement, two real processes."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.store import (
    SCHEMA_VERSION,
    Arrival,
    EventRow,
    EventState,
    Note,
    NoteOwner,
    PostState,
    Store,
    StoreError,
    note_key,
)
from tests.helpers import PYTHON, ROOT, wait_until

# The schema of version 1, as stores written by earlier releases have it.
MIGRATION_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    app_id TEXT NOT NULL, seqno INTEGER NOT NULL, dataset TEXT NOT NULL, version TEXT NOT NULL,
    sent_at REAL NOT NULL, post_state TEXT NOT NULL DEFAULT 'pending', post_error TEXT, posted_at REAL,
    state TEXT NOT NULL DEFAULT 'pending', received_at REAL, latency REAL,
    receive_count INTEGER NOT NULL DEFAULT 0, judged_at REAL, PRIMARY KEY (app_id, seqno)
);
CREATE INDEX events_open ON events (state, sent_at);
CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, connected_at REAL NOT NULL, last_seen REAL NOT NULL,
    disconnected_at REAL
);
CREATE INDEX subscriptions_open ON subscriptions (disconnected_at);
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "probe.sqlite3")
    yield store
    store.close()


def by_seqno(store: Store, app_id: str) -> dict[int, EventRow]:
    return {e.seqno: e for e in store.events(app_id)}


def judged(store: Store, now: float, timeout: float) -> tuple[int, int]:
    """(lost, unobserved) of the judgement of dataset "ds" at `now`."""
    counts = store.judge_overdue(now, {"ds": timeout}, timeout).get("ds", {})
    return counts.get(EventState.LOST, 0), counts.get(EventState.UNOBSERVED, 0)


def send(store: Store, app_id: str, sent_at: float, ok: bool = True) -> int:
    seqno = store.record_send(app_id, "ds", "1", sent_at)
    store.record_post(app_id, "ds", seqno, ok, None if ok else "http_5xx", sent_at + 0.01)
    return seqno


def test_app_id_and_seqno_survive_reopening(tmp_path: Path) -> None:
    first = Store(tmp_path / "s.db")
    app_id = first.app_id()
    assert re.fullmatch(r"[0-9a-f]{8}", app_id)
    assert [first.record_send(app_id, "ds", "1", 1.0) for _ in range(3)] == [1, 2, 3]
    first.close()
    again = Store(tmp_path / "s.db")
    assert again.app_id() == app_id
    assert again.record_send(app_id, "ds", "1", 2.0) == 4
    again.close()
    assert sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_each_arrival_is_classified_once(store: Store) -> None:
    app = store.app_id()
    now = time.time()
    s1, s2, s3 = (send(store, app, now + i) for i in range(3))
    first = store.classify_arrival(app, "ds", s1, now + 0.5)
    assert first.kind is Arrival.RECEIVED and first.latency == pytest.approx(0.5)
    assert store.classify_arrival(app, "ds", s1, now + 0.7).kind is Arrival.DUPLICATE
    assert store.classify_arrival(app, "ds", s3, now + 3.1).out_of_order is False
    late_order = store.classify_arrival(app, "ds", s2, now + 3.2)
    assert late_order.kind is Arrival.RECEIVED and late_order.out_of_order is True
    assert store.classify_arrival(app, "ds", 999, now).kind is Arrival.UNKNOWN
    clock_step = send(store, app, now + 100)
    result = store.classify_arrival(app, "ds", clock_step, now + 99)
    assert result.latency == 0.0 and result.clamped is True
    totals = store.totals()["ds"]
    assert totals["received"] == 4 and totals["duplicates"] == 1


def test_arrival_before_the_post_outcome_keeps_received(store: Store) -> None:
    app = store.app_id()
    seqno = store.record_send(app, "ds", "1", 10.0)
    assert store.classify_arrival(app, "ds", seqno, 10.2).kind is Arrival.RECEIVED
    store.record_post(app, "ds", seqno, True, None, 10.3)
    row = by_seqno(store, app)[seqno]
    assert (row.state, row.receive_count, row.post_state) == (EventState.RECEIVED, 1, PostState.OK)


def test_loss_is_judged_only_when_the_listener_saw_the_whole_window(store: Store) -> None:
    app = store.app_id()
    sub = store.subscription_opened("ds", 100.0)
    covered = send(store, app, 110.0)
    failed = send(store, app, 111.0, ok=False)
    store.subscription_closed(sub, 150.0)
    blind = send(store, app, 140.0)  # its window [140, 170] extends past the disconnect at 150
    store.subscription_opened("ds", 160.0)
    never_posted = store.record_send(app, "ds", "1", 161.0)  # the sender died mid-post
    assert judged(store, 200.0, 30.0) == (1, 2)
    rows = by_seqno(store, app)
    assert rows[covered].state is EventState.LOST and rows[blind].state is EventState.UNOBSERVED
    assert rows[failed].state is EventState.POST_FAILED and rows[never_posted].state is EventState.UNOBSERVED
    assert judged(store, 300.0, 30.0) == (0, 0)
    late = store.classify_arrival(app, "ds", covered, 301.0)
    assert late.kind is Arrival.LATE and late.judged_as is EventState.LOST
    assert by_seqno(store, app)[covered].state is EventState.LATE


def test_dangling_subscription_ends_at_its_last_heartbeat(store: Store) -> None:
    app = store.app_id()
    sub = store.subscription_opened("ds", 100.0)
    store.subscription_alive(sub, 120.0)  # then the listener was killed
    seqno = send(store, app, 115.0)
    assert store.close_dangling_subscriptions() == 1
    assert store.subscribed_since("ds", max_age=1e9, now=130.0) is None
    assert judged(store, 200.0, 30.0) == (0, 1)
    assert by_seqno(store, app)[seqno].state is EventState.UNOBSERVED


def test_prune_removes_only_old_final_events(store: Store) -> None:
    app = store.app_id()
    for i in range(1200):
        send(store, app, float(i))
    store.judge_overdue(2000.0, {"ds": 1.0}, 1.0)
    pending = store.record_send(app, "ds", "1", 5.0)
    assert store.prune(before=1000.0, batch=100) == 1000
    remaining = by_seqno(store, app)
    assert len(remaining) == 201 and pending in remaining


def test_garbage_and_newer_files_fail_with_a_clear_message(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        Store(garbage)
    newer = tmp_path / "newer.db"
    sqlite3.connect(newer).execute("PRAGMA user_version=99").connection.close()
    with pytest.raises(StoreError, match="newer than this probe"):
        Store(newer)


def worker(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "tests.store_worker", str(path), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_processes_at_1000_per_second_share_the_store_without_a_lock_error(tmp_path: Path) -> None:
    """Every event recorded by one process is classified once by the other, and neither ever sees "locked".

    How fast the store is belongs to the bench (`make bench`: the store's cost per event), not here.
    """
    path = tmp_path / "shared.db"
    Store(path).close()
    count = 3_000
    receiver = worker(path, "receive", str(count))
    sender = worker(path, "send", str(count), "1000")
    sent_out, _ = sender.communicate(timeout=60)
    received_out, _ = receiver.communicate(timeout=60)
    assert sender.returncode == 0, sent_out
    assert receiver.returncode == 0, received_out
    assert "locked" not in sent_out + received_out
    store = Store(path)
    rows = store.events(store.app_id())
    store.close()
    assert len(rows) == count
    assert {(r.state, r.receive_count, r.post_state) for r in rows} == {(EventState.RECEIVED, 1, PostState.OK)}


def test_sigkill_of_a_writer_leaves_the_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    store = Store(path)
    app = store.app_id()
    sender = worker(path, "send", "1000000", "100000")
    wait_until(lambda: len(store.events(app)) > 2000, 30, "the writer to be busy")
    sender.send_signal(signal.SIGKILL)
    sender.wait(10)
    store.close()
    reopened = Store(path)  # runs the integrity check
    rows = by_seqno(reopened, app)
    assert sorted(rows) == list(range(1, len(rows) + 1))  # no gap, no half-written row
    assert reopened.record_send(app, "ds", "1", time.time()) == len(rows) + 1
    reopened.close()


def test_fail_outs_count_up_until_cleared(store: Store) -> None:
    assert store.fail_outs() == (0, 0.0)
    assert store.record_fail_out(10.0) == 1
    assert store.record_fail_out(20.0) == 2
    assert store.fail_outs() == (2, 20.0)
    store.clear_fail_outs()
    assert store.fail_outs() == (0, 0.0)


def test_missing_share_counts_accepted_events_not_arrived_in_the_window(store: Store) -> None:
    app = store.app_id()
    arrived = send(store, app, 100.0)
    store.classify_arrival(app, "ds", arrived, 100.5)
    send(store, app, 110.0)  # accepted, never arrived
    send(store, app, 120.0, ok=False)  # failed posts were never expected
    late = send(store, app, 130.0)
    store.subscription_opened("ds", 0.0)
    store.judge_overdue(500.0, {"ds": 300.0}, 300.0)
    store.classify_arrival(app, "ds", late, 501.0)  # arrived after all: not missing
    send(store, app, 200.0)  # outside the window
    assert store.missing_share("ds", since=100.0, until=200.0) == (1, 3)
    assert store.missing_share("ds", since=300.0, until=400.0) == (0, 0)


def test_a_version_1_store_is_brought_forward_with_its_events(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATION_1)
    db.execute("PRAGMA user_version=1")
    db.execute("INSERT INTO meta (key, value) VALUES ('app_id', 'abcdef01'), ('next_seqno', '3')")
    db.execute(
        "INSERT INTO events (app_id, seqno, dataset, version, sent_at, post_state, state) "
        "VALUES ('abcdef01', 1, 'ds', '1', 10.0, 'ok', 'received'), ('abcdef01', 2, 'ds', '1', 20.0, 'ok', 'posted')"
    )
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.app_id() == "abcdef01"
        assert [(e.seqno, e.state) for e in store.events("abcdef01")] == [
            (1, EventState.RECEIVED),
            (2, EventState.POSTED),
        ]
        assert store.record_send("abcdef01", "ds", "1", 30.0) == 3
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    indexes = {row[1] for row in check.execute("PRAGMA index_list(events)")}
    check.close()
    assert "events_sent" in indexes


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"SQLite file of something else.*invoices"):
        Store(path)
    assert path.read_bytes() == before
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    check.close()


def test_a_file_claiming_our_schema_without_our_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=2")
    db.close()
    with pytest.raises(StoreError, match="lacks the probe's tables"):
        Store(path)


def test_a_note_is_written_once_per_streak_from_any_number_of_threads(store: Store) -> None:
    import threading

    note = Note(store, note_key(NoteOwner.SENDER, "ds"))
    firsts: list[bool] = []
    threads = [threading.Thread(target=lambda: firsts.append(note.record("posts fail"))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert firsts.count(True) == 1 and store.note(note_key(NoteOwner.SENDER, "ds")) == "posts fail"
    assert note.clear() is True and store.note(note_key(NoteOwner.SENDER, "ds")) is None
    assert note.clear() is False


def test_a_note_is_kept_under_the_key_earlier_releases_wrote() -> None:
    """Note keys live in the store's file: a running stack's notes, written by the old code,
    must be read by the new one after an upgrade of one process, so the spelling stays."""
    assert note_key(NoteOwner.SENDER, "probe-dataset") == "sender:probe-dataset"
    assert note_key(NoteOwner.LISTENER, "a:b") == "listener:a:b"
    assert [owner.value for owner in NoteOwner] == ["sender", "listener"]


def test_datasets_have_their_own_seqnos_and_are_judged_by_their_own_subscriptions(store: Store) -> None:
    app = store.app_id()
    assert [store.record_send(app, name, "1", 100.0) for name in ("a", "b", "a")] == [1, 1, 2]
    for name, seqno in (("a", 1), ("b", 1), ("a", 2)):
        store.record_post(app, name, seqno, True, None, 100.1)
    store.subscription_opened("a", 50.0)  # only a's subscription covered the window
    counts = store.judge_overdue(200.0, {"a": 30.0, "b": 30.0}, 30.0)
    assert counts == {
        "a": {EventState.LOST: 2, EventState.UNOBSERVED: 0},
        "b": {EventState.LOST: 0, EventState.UNOBSERVED: 1},
    }
    assert store.subscribed_since("b", 1e9, 200.0) is None and store.subscribed_since("a", 1e9, 200.0) == 50.0
    # The same seqno of another dataset is another event.
    assert store.classify_arrival(app, "b", 1, 201.0).kind is Arrival.LATE
    assert store.classify_arrival(app, "a", 3, 201.0).kind is Arrival.UNKNOWN
    totals = store.totals()
    assert (totals["a"]["lost"], totals["b"]["late"], totals["b"]["lost"]) == (2, 1, 0)
    assert [e.dataset for e in store.events(app, "b")] == ["b"]


def test_each_dataset_is_judged_after_its_own_loss_timeout(store: Store) -> None:
    app = store.app_id()
    store.subscription_opened("fast", 0.0)
    store.subscription_opened("slow", 0.0)
    for name in ("fast", "slow", "gone"):  # "gone": a dataset since removed from the configuration
        seqno = store.record_send(app, name, "1", 100.0)
        store.record_post(app, name, seqno, True, None, 100.1)
    counts = store.judge_overdue(200.0, {"fast": 60.0, "slow": 300.0}, 90.0)
    assert set(counts) == {"fast", "gone"}
    assert counts["gone"][EventState.UNOBSERVED] == 1  # no subscription of its own ever covered it
    assert store.in_flight() == {"slow": 1}


def test_a_store_of_schema_2_is_brought_forward_without_losing_an_event(tmp_path: Path) -> None:
    """A file as the previous release left it: events of one dataset, its counters, its notes."""
    from shared.store.schema import _MIGRATIONS

    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[1] + _MIGRATIONS[2])
    db.execute("PRAGMA user_version=2")
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("app_id", "abcdef01"), ("next_seqno", "4"), ("max_received_seqno:abcdef01", "2"), ("note:sender", "x")],
    )
    db.executemany(
        """INSERT INTO events (app_id, seqno, dataset, version, sent_at, post_state, state, receive_count)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            ("abcdef01", 1, "probe-dataset", "1", 10.0, "ok", "received", 1),
            ("abcdef01", 2, "probe-dataset", "1", 20.0, "ok", "received", 1),
            ("abcdef01", 3, "probe-dataset", "1", 30.0, "ok", "posted", 0),
        ],
    )
    db.execute("INSERT INTO subscriptions (dataset, connected_at, last_seen) VALUES ('probe-dataset', 5.0, 50.0)")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.app_id() == "abcdef01"
        assert [(e.dataset, e.seqno, e.state) for e in store.events("abcdef01")] == [
            ("probe-dataset", 1, EventState.RECEIVED),
            ("probe-dataset", 2, EventState.RECEIVED),
            ("probe-dataset", 3, EventState.POSTED),
        ]
        assert store.record_send("abcdef01", "probe-dataset", "1", 40.0) == 4  # the count goes on
        assert store.record_send("abcdef01", "other", "1", 40.0) == 1  # a new dataset starts at 1
        assert store.classify_arrival("abcdef01", "probe-dataset", 1, 60.0).kind is Arrival.DUPLICATE
        assert store.classify_arrival("abcdef01", "probe-dataset", 3, 60.0).out_of_order is False  # newest was 2
        assert store.note("sender") is None  # the old per-process notes are gone
        store.close_dangling_subscriptions()
        counts = store.judge_overdue(1000.0, {"probe-dataset": 30.0}, 30.0)
        assert counts["probe-dataset"][EventState.UNOBSERVED] == 1  # seqno 4, sent after the interval
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    keys = {row[0] for row in check.execute("SELECT key FROM meta")}
    check.close()
    assert "next_seqno" not in keys and "next_seqno:probe-dataset" in keys
    assert "max_received_seqno:abcdef01:probe-dataset" in keys


def test_a_wal_that_outgrew_its_limit_is_restarted_by_the_next_checkpoint(tmp_path: Path) -> None:
    """Under steady writes a passive checkpoint never restarts the WAL (checkpoint starvation):
    `make soak` saw it reach 590 MB. Past its limit the checkpoint restarts it."""
    from shared.store import WAL_RESTART_BYTES

    path = tmp_path / "probe.sqlite3"
    wal = tmp_path / "probe.sqlite3-wal"
    with Store(path) as store:
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM events").fetchone()  # holds a snapshot: nothing can be reset
        for _ in range(40):
            store.set_note("padding", "x" * 500_000)
        store.checkpoint()
        assert wal.stat().st_size > WAL_RESTART_BYTES  # the reader held it: the condition is real
        reader.execute("COMMIT")
        reader.close()
        store.checkpoint()
        assert wal.stat().st_size <= WAL_RESTART_BYTES // 2, wal.stat().st_size
        assert store.note("padding") == "x" * 500_000


def test_a_wall_clock_step_never_turns_into_lost_unobserved_or_a_wrong_latency(store: Store) -> None:
    """Issue 22.7, with the clocks injected: the wall clock steps +120 s, later -240 s, while the
    monotonic clock (which every process of one boot shares) runs on."""
    app = store.app_id()

    def send_at(wall: float, mono: float) -> int:
        seqno = store.record_send(app, "ds", "1", wall, mono)
        store.record_post(app, "ds", seqno, True, None, wall)
        return seqno

    def judge(wall: float, mono: float) -> dict:
        return store.judge_overdue(wall, {"ds": 30.0}, 30.0, mono, fresh=10.0).get("ds", {})

    sub = store.subscription_opened("ds", 1000.0, 50.0)
    in_flight = send_at(1010.0, 60.0)
    # +120 s: by the wall the event is 121 s old; by the monotonic clock 1 s.
    store.subscription_alive(sub, 1131.0, 61.0)
    assert judge(1131.0, 61.0) == {}
    result = store.classify_arrival(app, "ds", in_flight, 1133.0, None, 63.0)
    assert (result.kind, result.latency, result.clamped) == (Arrival.RECEIVED, 3.0, False)
    # -240 s: an event sent after the step has a wall time before the interval began.
    store.subscription_alive(sub, 895.0, 65.0)
    dropped = send_at(896.0, 66.0)
    for mono in range(70, 100, 5):
        store.subscription_alive(sub, 896.0 + mono - 66, float(mono))
    counts = judge(896.0 + 31, 97.0)
    assert counts == {EventState.LOST: 1, EventState.UNOBSERVED: 0}  # the pipeline dropped it: lost
    assert by_seqno(store, app)[dropped].state is EventState.LOST
    # Heartbeats stop (a stuck listener), the wall clock steps back 240 s: the last heartbeat looks
    # fresh by the wall, not by the monotonic clock; readiness and judging go by the latter.
    assert store.subscribed_since("ds", 10.0, 930.0, 98.0) == 1000.0
    assert store.subscribed_since("ds", 10.0, 930.0 - 240, 130.0) is None
    blind = send_at(700.0, 131.0)
    assert judge(700.0 + 31, 162.0) == {EventState.LOST: 0, EventState.UNOBSERVED: 1}
    assert by_seqno(store, app)[blind].state is EventState.UNOBSERVED

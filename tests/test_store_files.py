"""The store's files under a hostile neighbour: nothing written through a planted link, nothing
foreign adopted, and a foreign file left exactly as it was found."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from probe_stack.runtime import stack_lock
from shared.store import Store, StoreError, directory_problem, file_problem
from tests.helpers import ROOT

OTHER_UID = 65534  # nobody: "another user" (the tests run as root in the container)


def file_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.name.startswith(path.name)}


def test_an_empty_file_is_not_adopted_as_a_store(tmp_path: Path) -> None:
    path = tmp_path / "probe.sqlite3"
    path.touch()
    with pytest.raises(StoreError, match="empty file"):
        Store(path)
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["probe.sqlite3"]


def test_a_foreign_wal_database_is_refused_before_its_wal_is_touched(tmp_path: Path) -> None:
    """Left by a program killed mid-work: the file, its WAL and its index as they were."""
    path = tmp_path / "app.db"
    writer = f"""
import os, sqlite3
db = sqlite3.connect({str(path)!r}, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
for i in range(200):
    db.execute("INSERT INTO invoices (amount) VALUES (?)", (i,))
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=60)
    before = file_bytes(path)
    assert set(before) == {"app.db", "app.db-wal", "app.db-shm"} and len(before["app.db-wal"]) > 0
    # In a process of its own, as `probe run` opens it: a connection is closed (and its WAL
    # checkpointed into the file) at the latest when the process exits.
    opener = f"""
from shared.store import Store, StoreError
try:
    Store({str(path)!r})
except StoreError as exc:
    print(exc)
"""
    result = subprocess.run([sys.executable, "-c", opener], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert re.search(r"SQLite file of something else.*invoices", result.stdout), result
    after = file_bytes(path)
    assert after.keys() == before.keys()
    assert after["app.db"] == before["app.db"] and after["app.db-wal"] == before["app.db-wal"]


@pytest.mark.parametrize("suffix", ["-wal", "-shm", ".lock", ".rundir"])
def test_a_planted_link_beside_the_store_is_refused_and_its_target_untouched(tmp_path: Path, suffix: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's precious file\n")
    store = tmp_path / "data" / "probe.sqlite3"
    store.parent.mkdir()
    if suffix != ".lock":
        Store(store).close()
    (store.parent / (store.name + suffix)).symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(store)
    with pytest.raises(StoreError, match="symbolic link"):
        stack_lock.acquire(str(store), "test")
    assert victim.read_text() == "root's precious file\n"


def test_the_lock_is_never_opened_through_a_link_planted_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the link appears between the directory check and the open; O_NOFOLLOW refuses it."""
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    store = tmp_path / "probe.sqlite3"
    original = stack_lock.check_store_path

    def check_then_plant(path: Path) -> None:
        original(path)
        (tmp_path / "probe.sqlite3.lock").symlink_to(victim)

    monkeypatch.setattr(stack_lock, "check_store_path", check_then_plant)
    with pytest.raises(OSError):
        stack_lock.acquire(str(store), "test")
    assert victim.read_text() == "keep\n"


def test_a_companion_of_another_user_or_hard_linked_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "probe.sqlite3"
    Store(store).close()
    lock = tmp_path / "probe.sqlite3.lock"
    lock.write_text("")
    os.chown(lock, OTHER_UID, OTHER_UID)
    with pytest.raises(StoreError, match="belongs to another user"):
        stack_lock.acquire(str(store), "test")
    lock.unlink()
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    os.link(victim, lock)
    with pytest.raises(StoreError, match="hard links"):
        stack_lock.acquire(str(store), "test")
    assert victim.read_text() == "keep\n"


def test_a_directory_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StoreError, match="writable by other users"):
        Store(shared / "probe.sqlite3")
    assert list(shared.iterdir()) == []
    shared.chmod(0o1777)  # as /tmp: others can add names, never replace ours
    Store(shared / "probe.sqlite3").close()
    stack_lock.acquire(str(shared / "probe.sqlite3"), "test")


def test_the_directory_and_file_rules() -> None:
    assert directory_problem(0o40755, 1000, 1000) is None
    assert directory_problem(0o40755, 0, 1000) is None  # root's directory: root could do anything anyway
    assert directory_problem(0o40755, 1001, 1000) == "belongs to another user"
    assert "writable by other users" in (directory_problem(0o40775, 1000, 1000) or "")
    assert directory_problem(0o41777, 0, 1000) is None
    regular = os.stat_result((0o100600, 0, 0, 1, 1000, 1000, 0, 0, 0, 0))
    assert file_problem(regular, 1000) is None
    assert file_problem(regular, 1001) == "belongs to another user"


def test_our_own_store_with_its_wal_left_by_a_killed_writer_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "probe.sqlite3"
    with Store(path) as store:
        app_id = store.app_id()
    killed = f"""
import os
from shared.store import Store
store = Store({str(path)!r})
store.record_send(store.app_id(), "ds", "1", 1.0)
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", killed], check=True, timeout=60, cwd=ROOT)
    assert (tmp_path / "probe.sqlite3-wal").stat().st_size > 0
    with Store(path) as store:
        assert store.app_id() == app_id and [e.seqno for e in store.events(app_id)] == [1]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] > 0


def test_a_store_reached_through_a_link_is_checked_at_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    Store(real / "probe.sqlite3").close()
    (tmp_path / "probe.sqlite3").symlink_to(real / "probe.sqlite3")
    Store(tmp_path / "probe.sqlite3").close()  # our own link: fine
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (real / "probe.sqlite3-shm").unlink(missing_ok=True)
    (real / "probe.sqlite3-shm").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(tmp_path / "probe.sqlite3")
    (real / "probe.sqlite3-shm").unlink()
    os.lchown(tmp_path / "probe.sqlite3", OTHER_UID, OTHER_UID)
    with pytest.raises(StoreError, match="symbolic link of another user"):
        Store(tmp_path / "probe.sqlite3")
    assert victim.read_text() == "keep\n"


def test_a_store_directory_made_under_umask_002_is_not_refused_as_group_writable(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        stack_lock.acquire(str(tmp_path / "new" / "probe.sqlite3"), "test")
        Store(tmp_path / "new" / "probe.sqlite3").close()
    finally:
        os.umask(old)
    assert (tmp_path / "new").stat().st_mode & 0o022 == 0


def test_a_new_store_is_never_created_through_a_link_planted_after_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race on the store's own name (in a sticky directory anyone may add names to): a link planted
    between the check and SQLite's open was followed, and SQLite created its database where the
    planter chose."""
    from shared.store import connection as store_mod  # where Store's opening looks the check up

    victim = tmp_path / "victim"  # say /etc/ld.so.preload: created by root's probe run, as a database
    store = tmp_path / "probe.sqlite3"
    original = store_mod.check_store_path

    def check_then_plant(path: Path) -> Path:
        checked = original(path)
        store.symlink_to(victim)
        return checked

    monkeypatch.setattr(store_mod, "check_store_path", check_then_plant)
    with pytest.raises(StoreError, match="symbolic link"):
        Store(store)
    assert not victim.exists()


def test_a_new_store_file_is_created_private(tmp_path: Path) -> None:
    store = tmp_path / "probe.sqlite3"
    old = os.umask(0o022)
    try:
        Store(store).close()
    finally:
        os.umask(old)
    assert store.stat().st_mode & 0o077 == 0

"""Whose files the store's are: the checks before the probe opens or writes anything beside the store.

Why: the probe may run as root in a directory others can write (a sticky /tmp, say). A link or
a foreign file planted at the store's name, or at one of its companions, would have the probe
write into a file of the planter's choosing; so every file is checked to be a plain file of
ours, and a new one is created private and never through a link.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from shared.store.records import StoreError
from shared.store.schema import check_identity


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path` now, or None if there is none: how a deleted or replaced store shows."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


# The files SQLite and the stack keep beside the store. SQLite opens its own with O_NOFOLLOW;
# the stack's lock and run-directory record are opened so too (open_companion), and every one
# must be a plain file of ours.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal", ".lock", ".rundir")


def directory_problem(mode: int, owner: int, uid: int) -> str | None:
    """Why a store's directory is unsafe (others could plant or swap its files there), or None.

    Others may not write to it, unless it is sticky (as /tmp is): there they can add names but
    never remove or replace ours, and the files found there are checked one by one.
    """
    if owner not in (uid, 0):
        return "belongs to another user"
    if mode & 0o022 and not mode & stat.S_ISVTX:
        return f"is writable by other users (mode {stat.S_IMODE(mode):o}, not sticky)"
    return None


def file_problem(info: os.stat_result, uid: int) -> str | None:
    """Why an existing store file or companion cannot be trusted (a link, another's, hard-linked), or None."""
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != uid:
        return "belongs to another user"
    if info.st_nlink != 1:
        return "has other hard links"
    return None


def make_store_dir(directory: Path) -> None:
    """Create the store's directory writable by us alone, whatever the umask (002 would make it
    group-writable, and then refused by check_store_path)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)


def check_store_path(path: Path) -> Path:
    """Refuse a store whose directory others can write, or whose companions are not plain files of ours;
    returns where the store's file is (the target of a link of ours).

    A planted `-wal`, `-shm` or `.lock` link would otherwise make the stack write through it
    into a file of the planter's choosing (root's files, when root runs the probe).
    """
    uid = os.geteuid()
    path = _follow_own_link(path, uid)
    directory = path.parent
    try:
        info = os.stat(directory)
    except FileNotFoundError:
        return path
    problem = directory_problem(info.st_mode, info.st_uid, uid)
    if problem:
        raise StoreError(
            f"the store's directory {directory} {problem}: others could plant files the probe writes through; "
            "use a directory only you can write"
        )
    _check_companions(path, uid)
    return path


def _follow_own_link(path: Path, uid: int) -> Path:
    """Where the store is, when `path` is a link of ours to it (SQLite follows it too: its files
    are then the target's, beside the target); a link of another user's is a plant."""
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISLNK(link.st_mode):
        return path
    if link.st_uid != uid:
        raise StoreError(f"{path} is a symbolic link of another user; the probe will not open it")
    return path.resolve()


def _check_companions(path: Path, uid: int) -> None:
    """Refuse the store's file or a companion that is there but is not a plain file of ours."""
    for name in ("", *COMPANION_SUFFIXES):
        companion = path.with_name(path.name + name)
        try:
            problem = file_problem(os.lstat(companion), uid)
        except FileNotFoundError:
            continue
        if problem:
            raise StoreError(f"{companion} {problem}; the probe will not open it: remove it, or use another store")


def open_companion(path: Path) -> int:
    """Open (creating) a file beside the store for writing, never through a link, and only a plain file of ours."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    problem = file_problem(os.fstat(fd), os.geteuid())
    if problem:
        os.close(fd)
        raise StoreError(f"{path} {problem}; the probe will not write to it: remove it, or use another PROBE_DB_PATH")
    return fd


def open_checked(path: Path) -> tuple[int, int]:
    """The identity of the store's file at `path` (check_store_path's answer), created if new;
    refused if what is there is no longer a plain file of ours.

    SQLite follows a link at the store's own name, so a link planted after check_store_path (in a
    sticky directory, where anyone may add names) would have had it create, or fill, a file of the
    planter's choosing. So a new store's file is created here, private, never through a link; an
    existing one is checked again as it is now. Once the file is ours, no one else can swap it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        info = os.lstat(path)
        problem = file_problem(info, os.geteuid())
        if problem:
            raise StoreError(f"store {path} {problem}; the probe will not open it") from None
        _identify(path)
        return info.st_dev, info.st_ino
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return info.st_dev, info.st_ino


def _identify(path: Path) -> None:
    """Refuse a file that is not a probe store before anything writes to it.

    Read-only: an open for writing would already change a foreign file (its WAL is checkpointed
    into it and deleted when the connection closes). A file the probe cannot read this way is
    left to the writable open, which says what is wrong.
    """
    if path.stat().st_size == 0:
        raise StoreError(
            f"store {path} is an empty file: the probe never leaves one so (it creates its stores itself), "
            "so this one is someone else's; remove it or point PROBE_DB_PATH at a new file"
        )
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return
        raise StoreError(
            f"store {path} cannot be opened ({exc}); check PROBE_DB_PATH points at a "
            "probe store on local disk, or move the file aside"
        ) from None
    finally:
        db.close()
    check_identity(path, version, tables)

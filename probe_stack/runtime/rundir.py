"""Where a stack's control socket lives: chosen by `probe run`, found by `probe ctl` from the store path.

The default name, `probe-<uid>-<hash of the store path>`, is predictable, so in a
shared /tmp another user could create it first and stop the probe from starting.
So the default is under $XDG_RUNTIME_DIR when that is a private directory of ours
(nobody else can create names there), and a default taken by someone else is
never used: the stack makes a directory of its own with an unpredictable name
(mkdtemp) instead, and says so. Either way the directory in use is recorded in a
file beside the store (`<store>.rundir`), written only after every lock is held,
so `probe ctl` and `probe status` find it from the store path alone, with no secret.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from probe_stack.runtime.stack_lock import RunDirError, hold_private_dir, private_problem
from shared.store import file_problem, open_companion

POINTER_SUFFIX = ".rundir"
POINTER_MAX_BYTES = 4096


def pointer_path(db_path: str) -> Path:
    store = Path(db_path).resolve()
    return store.with_name(store.name + POINTER_SUFFIX)


def default(db_path: str, env: Mapping[str, str]) -> Path:
    """The preferred run directory of a store: a pure function of its path and the environment.

    Under $XDG_RUNTIME_DIR when that is private and ours, else the temporary directory; either
    way short, because AF_UNIX socket paths are limited to about 107 bytes.
    """
    key = hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:10]
    name = f"probe-{os.geteuid()}-{key}"
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        try:
            if private_problem(os.stat(xdg), os.geteuid()) is None:
                return Path(xdg) / name
        except OSError:
            pass
    return Path(tempfile.gettempdir()) / name


def recorded(db_path: str) -> Path | None:
    """The run directory the store's last stack recorded, if the record and the directory are ours."""
    try:
        fd = os.open(pointer_path(db_path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if file_problem(os.fstat(fd), os.geteuid()):
            return None
        text = os.read(fd, POINTER_MAX_BYTES).decode(errors="replace").strip()
    finally:
        os.close(fd)
    path = Path(text)
    if not text or not path.is_absolute():
        return None
    try:
        return path if private_problem(os.lstat(path), os.geteuid()) is None else None
    except OSError:
        return None


def find(db_path: str, env: Mapping[str, str]) -> Path:
    """The run directory of the stack on this store: PROBE_RUN_DIR, else the recorded one, else the default."""
    explicit = env.get("PROBE_RUN_DIR")
    if explicit:
        return Path(explicit)
    return recorded(db_path) or default(db_path, env)


def choose(db_path: str, env: Mapping[str, str]) -> tuple[Path, int, str | None]:
    """The run directory for a new stack, locked: (path, descriptor to keep, warning or None).

    PROBE_RUN_DIR is used as given or refused (RunDirError). A default that is not ours gives
    way to the directory recorded before, or to a new one with an unpredictable name.
    Another stack holding the directory raises StackRunning.
    """
    explicit = env.get("PROBE_RUN_DIR")
    if explicit:
        return Path(explicit), hold_private_dir(Path(explicit)), None
    preferred = default(db_path, env)
    try:
        return preferred, hold_private_dir(preferred), None
    except RunDirError as exc:
        warning = f"the run directory {preferred} {exc}; not using it"
    previous = recorded(db_path)
    if previous is not None and previous != preferred:
        try:
            return previous, hold_private_dir(previous), f"{warning}, but {previous} (used before)"
        except RunDirError:
            pass
    try:
        made = Path(tempfile.mkdtemp(prefix=preferred.name + "-", dir=preferred.parent))
    except OSError as exc:
        raise RunDirError(f"{exc}; set PROBE_RUN_DIR") from None
    return made, hold_private_dir(made), f"{warning}, but {made}"


def record(db_path: str, path: Path) -> None:
    """Note the run directory beside the store (for `probe ctl`); only once the stack holds its locks."""
    fd = open_companion(pointer_path(db_path))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{path}\n".encode(), 0)
    finally:
        os.close(fd)

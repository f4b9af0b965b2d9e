"""Starting the emulator as a process of its own: how `probe run --with-emulator`, the tests and the bench do it.

The demo identity is the contract's (`shared.contract`), read by the emulator itself: only an
identity that differs from it is handed over. Secrets go by environment, never on the command
line, which every user of the machine can read in `ps`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emulator.options import SECRET_ENV, TOKEN_ENV
from shared.contract import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, LOCAL_WEBHOOK_TOKEN, REALM

ROOT = Path(__file__).resolve().parent.parent
UP_SECONDS = 20.0  # how long a starting emulator may take to answer its health check


@dataclass(frozen=True)
class Identity:
    """Who the emulator lets in: the contract's demo identity unless the probe is configured otherwise."""

    realm: str = REALM
    client_id: str = LOCAL_CLIENT_ID
    client_secret: str = LOCAL_CLIENT_SECRET
    webhook_token: str = LOCAL_WEBHOOK_TOKEN

    def flags(self) -> list[str]:
        """The names that differ from the contract's, as flags (they are not secret)."""
        out = ["--realm", self.realm] if self.realm != REALM else []
        return out + (["--client-id", self.client_id] if self.client_id != LOCAL_CLIENT_ID else [])

    def environ(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` with the secrets that differ from the contract's, and without inherited ones that would."""
        env = {k: v for k, v in base.items() if k not in (SECRET_ENV, TOKEN_ENV)}
        if self.client_secret != LOCAL_CLIENT_SECRET:
            env[SECRET_ENV] = self.client_secret
        if self.webhook_token != LOCAL_WEBHOOK_TOKEN:
            env[TOKEN_ENV] = self.webhook_token
        return env


def launch(
    port: int,
    flags: Sequence[str] = (),
    identity: Identity = Identity(),  # frozen: one shared default is safe
    output: int | None = None,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen:
    """`python -m emulator` on loopback `port`, in a session of its own, writing to `output` (inherited if None).

    -P: never import from the working directory, where a stray `emulator/` would stand in for the real one.
    """
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "emulator", "--port", str(port), *identity.flags(), *flags],
        cwd=ROOT,
        env=identity.environ(os.environ if env is None else env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=None if output is None else subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )


def wait_up(emulator: subprocess.Popen, port: int, timeout: float = UP_SECONDS) -> bool:
    """Whether the emulator answers its health check within `timeout`; False at once if it exits first."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=1).ok:
                return True
        except requests.RequestException:
            pass
        if emulator.poll() is not None:
            return False
        time.sleep(0.1)
    return False

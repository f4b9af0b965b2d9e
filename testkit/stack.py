"""A whole supervised stack (`probe run`) against an emulator, for tests and the bench alike.

Each gets a run directory of its own (short, under /tmp: supervisord's socket path has a length
limit) and a free metrics port; its store and its supervisord are at hand for the checks.
"""

from __future__ import annotations

import configparser
import shutil
import signal
import tempfile
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

import requests

from testkit.emulator import EmulatorClient
from testkit.probe import probe_cmd, read_events, stack_env, store_app_id, store_in_flight
from testkit.process import Proc, free_port, start, wait_until

PROGRAMS = ("sender", "listener", "metrics")


@dataclass
class ProbeStack:
    emulator: EmulatorClient
    tmp: Path
    env: dict[str, str]
    run_dir: str
    proc: Proc | None = None

    @classmethod
    def create(cls, emulator: EmulatorClient, tmp: Path, prefix: str = "pb-", **settings: object) -> ProbeStack:
        run_dir = tempfile.mkdtemp(prefix=prefix)
        return cls(emulator, tmp, stack_env(emulator, tmp, run_dir, free_port(), **settings), run_dir)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"

    def start(self, wait: bool = True) -> None:
        """`probe run`; with `wait`, until its metrics answer and every program runs."""
        self.proc = start(probe_cmd("run"), self.tmp / "stack.log", env=self.env)
        if not wait:
            return
        wait_until(lambda: requests.get(self.metrics_url, timeout=2).ok, 30, "the metrics endpoint")
        wait_until(lambda: all(self.pid(p) for p in PROGRAMS), 30, "every program running")

    def stop(self, timeout: float = 60) -> int | None:
        """Stop the stack as Ctrl-C would (SIGTERM), and remove its run directory; its exit code."""
        code = self.proc.stop(signal.SIGTERM, timeout=timeout) if self.proc is not None else None
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return code

    def app_id(self) -> str:
        return store_app_id(self.env)

    def events(self) -> list:
        """Every event of the stack's probe instance, by dataset and seqno."""
        return read_events(self.env)

    def in_flight(self) -> int:
        """Events neither received nor judged yet (of every dataset)."""
        return store_in_flight(self.env)

    def rpc(self) -> xmlrpc.client.ServerProxy:
        """supervisord's XML-RPC interface, with the credentials `probe run` wrote for `probe ctl`."""
        from supervisor.xmlrpc import SupervisorTransport

        conf = configparser.ConfigParser()
        conf.read(Path(self.run_dir) / "supervisorctl.conf")
        section = conf["supervisorctl"]
        transport = SupervisorTransport(section["username"], section["password"], section["serverurl"])
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self, program: str) -> int:
        info = self.rpc().supervisor.getProcessInfo(program)
        return int(info["pid"]) if info["statename"] == "RUNNING" else 0

    def stop_sender(self) -> None:
        self.rpc().supervisor.stopProcess("sender", True)

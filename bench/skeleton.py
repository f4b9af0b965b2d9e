"""What every bench scenario does around its measurement, written once.

A scenario starts the emulator (with its faults), creates the real supervised stack on it,
measures, stops both whatever happened, and reads the truth. `Scenario` is the one shape
each module of `bench/scenarios/` exposes, as blackbox_exporter keeps one file per prober:
its flags, a run that returns its keys of the results, and its lines of the report.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BenchStack
from testkit.emulator import EmulatorClient, start_emulator

FAULTS = {"delay_ms": 20, "drop_rate": 0.01, "duplicate_rate": 0.01, "seed": 1}
LOSS_TIMEOUT = 5.0
DATASET_ID = "probe-dataset"

Results = dict  # the top-level keys of bench/results/latest.json


@dataclass(frozen=True)
class Scenario:
    """One measurement of `make bench`."""

    name: str  # as `python -m bench NAME` runs it alone
    options: Callable[[argparse.ArgumentParser], None]  # its flags
    run: Callable[[argparse.Namespace, Path], Results]  # its keys of the results; {} when its flags skip it
    report: Callable[[Results], list[str]]  # its lines of latest.md, read from all the results


def no_options(_: argparse.ArgumentParser) -> None:
    """For a scenario without flags of its own."""


@contextmanager
def emulator_only(tmp: Path, *args: str, faults: dict | None = None) -> Iterator[EmulatorClient]:
    """The emulator on a free loopback port (with `faults`), stopped afterwards."""
    emulator = start_emulator(tmp, *args)
    try:
        if faults:
            emulator.faults(**faults)
        yield emulator
    finally:
        emulator.proc.stop()


@contextmanager
def on_emulator(
    tmp: Path, *args: str, faults: dict | None = None, **settings: object
) -> Iterator[tuple[EmulatorClient, BenchStack]]:
    """The emulator and the stack created on it (not started: some write its configuration
    first); both stopped afterwards, whatever happened."""
    with emulator_only(tmp, *args, faults=faults) as emulator:
        stack = BenchStack.create(emulator, tmp, **settings)
        try:
            yield emulator, stack
        finally:
            stack.stop()


def settle(stack: BenchStack, loss_timeout: float = LOSS_TIMEOUT) -> None:
    """Stop sending, then wait until every event sent is judged."""
    stack.stop_sender()
    stack.wait_judged(loss_timeout + 30)


def truth_of(emulator: EmulatorClient, app_id: str, key: Callable[[dict], object]) -> dict:
    """The emulator's record of the stack's own events (another instance's left out), by `key`."""
    return {key(e): e for e in emulator.truth()["events"] if e["app_id"] == app_id}


def store_bytes(stack: BenchStack) -> tuple[int, int]:
    """The store's file and its WAL, in bytes."""
    db = Path(stack.env["PROBE_DB_PATH"])
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size, wal.stat().st_size if wal.exists() else 0

"""The scenarios of `make bench`, one module each, in the order they run and report."""

from __future__ import annotations

from bench.scenarios import datasets, emulator_throughput, floor, footprint, imports, rates, restarts, tracing
from bench.skeleton import Scenario

SCENARIOS: tuple[Scenario, ...] = tuple(
    m.SCENARIO for m in (rates, tracing, footprint, restarts, datasets, imports, floor, emulator_throughput)
)

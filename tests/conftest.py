from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.emulator import EmulatorClient, serve_emulator


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorClient]:
    """The real emulator on a free loopback port, served by a thread of the test process (no interpreter to start)."""
    emu = serve_emulator()
    yield emu
    emu.proc.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("---- emulator log ----\n" + emu.proc.output()[-5000:])


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import EmulatorClient, start_emulator


@pytest.fixture
def emulator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EmulatorClient]:
    """A real emulator process on a free loopback port; its log is shown when a test fails."""
    emu = start_emulator(tmp_path)
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

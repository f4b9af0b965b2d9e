"""The status page in a real headless Chromium, against the whole supervised stack with drops.

What a person sees: a row per dataset with its verdict, a latency graph with points, the
lost events kept among the failures, no request anywhere else and no console error, a
screenshot that is not blank; and hostile field names from the network shown as text.
Prometheus, meanwhile, keeps getting the exposition at `/`.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from shared import event as event_mod
from shared.contract import LOCAL_CLIENT_SECRET, LOCAL_WEBHOOK_TOKEN
from shared.store import EventState, FailureKind, Store, StoreReader
from testkit.emulator import start_emulator
from testkit.process import wait_until
from tests.browser import Browser, png_colours
from tests.e2e.harness import PROMTOOL, Stack, probe_run, require

pytestmark = pytest.mark.timeout(300)

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
CONFIG = "environment: local\ndatasets:\n  - id: drops\n  - id: steady\n"


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    emulator = start_emulator(tmp_path, "--dataset", "drops/1", "--dataset", "steady/1")
    emulator.faults("drops", drop_rate=0.3, seed=5)
    (tmp_path / "probe.yaml").write_text(CONFIG)
    try:
        with probe_run(emulator, tmp_path, request, 1.5, PROBE_CONFIG=tmp_path / "probe.yaml") as stack:
            yield stack
    finally:
        emulator.proc.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    chromium = Browser(tmp_path)
    try:
        yield chromium
    finally:
        chromium.close()


def kept(env: dict[str, str], dataset: str, kind: FailureKind) -> int:
    with StoreReader(env["PROBE_DB_PATH"]) as store:
        return sum(f.kind is kind for f in store.failures(dataset))


def send_hostile_copy(stack: Stack) -> None:
    """A copy of a received event of `steady` with field names that are markup: altered (it keeps
    the instance's seal of the event as sent), so kept."""
    with StoreReader(stack.env["PROBE_DB_PATH"]) as store:
        app_id = store.app_id()
        row = next(e for e in store.recent_events(50, "steady") if e.state is EventState.RECEIVED)
    with Store(stack.env["PROBE_DB_PATH"], create=False) as store:
        key = store.event_key()
    doc = event_mod.build(app_id, "steady", row.seqno, row.sent_at)
    event_mod.seal(doc, key)
    doc[SCRIPT] = IMG
    doc[IMG] = SCRIPT
    assert stack.emulator.inject(dataset="steady", text=json.dumps(doc) + "\n") == 1


def test_the_status_page_in_chromium_shows_each_dataset_its_graph_and_kept_failures_and_escapes_the_network(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    url = stack.metrics_url
    wait_until(lambda: kept(stack.env, "drops", FailureKind.LOST) >= 2, 90, "lost events of drops kept")
    send_hostile_copy(stack)
    wait_until(lambda: kept(stack.env, "steady", FailureKind.CORRUPTED) == 1, 20, "the hostile copy kept")

    page = browser.page()
    page.load(f"{url}/")  # Chromium's own Accept prefers text/html: the page, not the metrics
    assert page.js("document.title").startswith("dataplatform-probe"), page.js("document.body.innerText")[:300]
    page.load(f"{url}/status")
    rows = page.js(
        "[...document.querySelectorAll('tr.dataset-row')]"
        ".map(r => [r.dataset.dataset, r.querySelector('[data-verdict]').dataset.verdict])"
    )
    assert sorted(name for name, _ in rows) == ["drops", "steady"], rows
    assert all(verdict in ("healthy", "degraded", "down", "blind") for _, verdict in rows), rows
    assert dict(rows)["drops"] == "degraded", rows  # 30% dropped: loss above the alerts' 1%
    # Each graph's p99: a line of a point a minute, or a dot while the stack is younger than two minutes.
    points = page.js(
        "[...document.querySelectorAll('details.dataset svg.latency')].map(svg => {"
        " const line = svg.querySelector('polyline.p99');"
        " return line ? line.getAttribute('points').trim().split(/\\s+/).length"
        " : svg.querySelectorAll('circle.p99[cx][cy]').length; })"
    )
    assert len(points) == 2 and min(points) >= 1, points
    lost = page.js('document.querySelectorAll(\'details[data-dataset="drops"] tr.failure[data-kind="lost"]\').length')
    assert lost >= 2

    # The hostile field names are on the page as text, and nothing of them became markup.
    shown = page.js(
        'document.querySelector(\'details[data-dataset="steady"] tr.failure[data-kind="corrupted"]\').textContent'
    )
    assert SCRIPT in shown and IMG in shown, shown
    assert page.js("document.querySelectorAll('script, img, iframe, object').length") == 0

    origin = url + "/"
    assert page.requests and all(r.startswith(origin) or r.startswith("data:") for r in page.requests), page.requests
    assert page.problems == [], page.problems

    png = page.screenshot(tmp_path / "status.png")
    small = page.call(
        "Page.captureScreenshot", format="png", clip={"x": 0, "y": 0, "width": 1200, "height": 900, "scale": 0.25}
    )
    assert png_colours(base64.b64decode(small["data"])) >= 16, "the screenshot is blank"
    assert len(png) > 10_000

    # Prometheus's own Accept at / still gets the exposition, which promtool accepts.
    scrape = requests.get(f"{url}/", headers={"Accept": PROMETHEUS_ACCEPT}, timeout=10)
    assert scrape.headers["Content-Type"].startswith("text/plain"), scrape.headers
    assert "probe_events_posted_total" in scrape.text
    if PROMTOOL:
        promtool = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape.text, capture_output=True, text=True)
        assert promtool.returncode == 0 and not (promtool.stdout + promtool.stderr).strip(), promtool.stdout
    else:
        require(PROMTOOL)
    for accept in (None, "*/*"):  # curl and the original's scrape
        headers = {"Accept": accept} if accept else {}
        got = requests.get(f"{url}/", headers=headers, timeout=10)
        assert got.headers["Content-Type"].startswith("text/plain") and "# HELP" in got.text
    status = requests.get(f"{url}/status", timeout=10)
    assert status.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert LOCAL_CLIENT_SECRET not in status.text and LOCAL_WEBHOOK_TOKEN not in status.text
    assert "http://" not in status.text and "ws://" not in status.text  # no secret, no URL with one

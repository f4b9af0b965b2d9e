"""The listener makes no HTTP request, so it never loads requests (nor urllib3): what every
listener process would otherwise carry in memory and start-up time for nothing. The bounded
name lookups its settings check and its subscriptions use live in shared/resolve.py for this."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

LOAD_AND_REPORT = """
import json, sys
from shared import config
import probe_listener.__main__, probe_listener.subscription, probe_listener.receiver, probe_listener.judge
config.load({"PROBE_CONFIG": sys.argv[1], "ORIGO_ENVIRONMENT": "local"})
print(json.dumps(sorted(name for name in ("requests", "urllib3") if name in sys.modules)))
"""


def test_the_listener_and_its_settings_check_load_no_http_client() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AND_REPORT, str(ROOT / "probe.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

"""The Dockerfile, linted (no Docker engine runs here) and checked for what the image must have."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.helpers import ROOT


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_essentials() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, flags=re.M)
    assert "pipenv sync" in text and "Pipfile.lock" in text  # dependencies from the lock
    user = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^EXPOSE 8000$", text, flags=re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r'^VOLUME \["/data"\]', text, flags=re.M) and "PROBE_DB_PATH=/data/" in text
    assert re.search(r'^ENTRYPOINT \["probe", "run"\]', text, flags=re.M)

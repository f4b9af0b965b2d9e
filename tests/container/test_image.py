"""The image, built from the Dockerfile and run with podman against the emulator on the host network.

What a user of the container relies on: it runs as non-root on a read-only root, events flow,
its HEALTHCHECK passes, `stop` is prompt and clean, the store (and app_id) live on the volume,
a bad setting exits 2 at once, a program gone FATAL ends the container, and no secret is logged.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from shared.exits import ExitStatus
from tests.container.podman import (
    IMAGE,
    Containers,
    build_image,
    ensure_base_image,
    image_size_mb,
    podman,
    require_tools,
)
from tests.helpers import EmulatorClient, free_port, serve_emulator, wait_until

CLIENT_SECRET = "container-secret-7c1f9b2e"
WEBHOOK_TOKEN = "container-token-4d8a0e63"
POST_TIMEOUT_SECONDS = 5.0
STOP_MARGIN_SECONDS = 10.0


@pytest.fixture(scope="module")
def image() -> float:
    require_tools()
    ensure_base_image()
    build_image()
    return image_size_mb()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorClient]:
    """The emulator on host loopback, with secrets of its own so that their absence from logs means something."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMULATOR_CLIENT_SECRET", CLIENT_SECRET)
        patch.setenv("EMULATOR_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
        emulator = serve_emulator()
    yield emulator
    emulator.proc.stop()


@pytest.fixture
def containers() -> Iterator[Containers]:
    ours = Containers()
    yield ours
    ours.remove_all()


def probe_env(platform: EmulatorClient, metrics_port: int, **extra: str) -> dict[str, str]:
    base = platform.base
    return {
        "ORIGO_ENVIRONMENT": "local",
        "KEYCLOAK_SERVER": f"{base}/auth",
        "COLLECTOR_URL": f"{base}/event-collector/event/{{dataset_id}}/{{version}}",
        "WEBSOCKET_URL": f"ws://127.0.0.1:{platform.port}/event-data-subscription",
        "ORIGO_CLIENT_SECRET": CLIENT_SECRET,
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "EVENT_INTERVAL_SECONDS": "0.2",
        "POST_TIMEOUT_SECONDS": str(POST_TIMEOUT_SECONDS),
        "METRICS_PORT": str(metrics_port),
        "STARTUP_WAIT_SECONDS": "0",
        **extra,
    }


def received(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    match = re.search(r"^probe_events_received_total\{[^}]*\} (\S+)$", text, flags=re.M)
    return float(match.group(1)) if match else 0.0


def ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_flowing(containers: Containers, name: str, port: int) -> None:
    try:
        wait_until(lambda: ready(port) and received(port) > 0, 60, "the container ready with events received")
    except AssertionError:
        raise AssertionError(f"container {name} not flowing; its log:\n{containers.logs(name)[-5000:]}") from None


def store_status(name: str) -> dict:
    return json.loads(podman("exec", name, "probe", "status", "--json", "--last", "0").stdout)


def app_id_logged(log: str) -> set[str]:
    return set(re.findall(r"as app_id=(\w+)", log))


def test_the_image_runs_flows_stops_cleanly_and_keeps_its_store(
    image: float, platform: EmulatorClient, containers: Containers
) -> None:
    volume = containers.volume()
    port = free_port()
    env = probe_env(platform, port)
    options = ("--read-only", "--tmpfs", "/tmp", "--volume", f"{volume}:/data")
    name, result = containers.run(env, *options)
    assert result.returncode == 0, result.stderr
    wait_flowing(containers, name, port)

    assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
    assert podman("exec", name, "probe", "ctl", "pid").stdout.strip() != "1"  # probe run is pid 1, not supervisord
    health = podman("healthcheck", "run", name, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    first = store_status(name)
    assert first["totals"]["probe-dataset"]["received"] > 0

    started = time.monotonic()
    podman("stop", "--time", str(int(POST_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS)), name, timeout=60)
    took = time.monotonic() - started
    assert containers.exit_code(name) == ExitStatus.OK
    assert took < POST_TIMEOUT_SECONDS + STOP_MARGIN_SECONDS, f"stop took {took:.1f}s"
    log = containers.logs(name)
    assert CLIENT_SECRET not in log and WEBHOOK_TOKEN not in log

    # A new container on the same volume: the same store, the same app_id, the count goes on.
    again, result = containers.run(env, *options)
    assert result.returncode == 0, result.stderr
    wait_flowing(containers, again, port)
    second = store_status(again)
    assert second["app_id"] == first["app_id"]
    assert app_id_logged(containers.logs(again)) == {first["app_id"]} == app_id_logged(log)
    assert sum(second["totals"]["probe-dataset"].values()) > sum(first["totals"]["probe-dataset"].values())


def test_a_bad_setting_exits_2_at_once_with_one_line(
    image: float, platform: EmulatorClient, containers: Containers
) -> None:
    env = probe_env(platform, free_port(), EVENT_INTERVAL_SECONDS="banana")
    started = time.monotonic()
    name, result = containers.run(env, "--read-only", "--tmpfs", "/tmp", detach=False)
    assert time.monotonic() - started < 20
    assert result.returncode == ExitStatus.CONFIG
    lines = [line for line in containers.logs(name).splitlines() if line.strip()]
    assert len(lines) == 1 and "EVENT_INTERVAL_SECONDS" in lines[0] and "banana" in lines[0], lines
    assert CLIENT_SECRET not in lines[0]


def test_a_program_gone_fatal_ends_the_container_non_zero(
    image: float, platform: EmulatorClient, containers: Containers
) -> None:
    port = free_port()
    name, result = containers.run(probe_env(platform, port), "--read-only", "--tmpfs", "/tmp")
    assert result.returncode == 0, result.stderr
    wait_until(lambda: ready(port), 60, "the container ready")
    # The metrics program stops and its port is taken (we are on the host network), so its
    # restarts fail until supervisord gives up on it: FATAL.
    podman("exec", name, "probe", "ctl", "stop", "metrics")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        podman("exec", name, "probe", "ctl", "start", "metrics", check=False)
        # supervisord tries startretries times, each a Python start that a busy machine slows
        # many times over, before it calls the program FATAL and the container ends.
        wait_until(lambda: not containers.running(name), 150, "the container ended")
    assert containers.exit_code(name) == ExitStatus.FATAL
    assert "FATAL" in containers.logs(name)


def test_the_image_carries_only_what_runs(image: float) -> None:
    """No pipenv, no compiler, no dev dependencies: the final stage gets the virtualenv and the code."""
    found = podman(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        IMAGE,
        "-c",
        "command -v pipenv gcc cc; ls /app/.venv/bin | grep -E '^(pip|pytest|ruff|pipenv)'; "
        'for m in pytest ruff pipenv; do python -c "import $m" 2>/dev/null && echo $m; done; '
        "ls /app | grep -E '^(tests|bench|\\.git|var)$'; true",
    )
    assert found.stdout.strip() == "", f"in the image, and not needed to run: {found.stdout}"
    assert podman("run", "--rm", "--entrypoint", "probe", IMAGE, "--version").stdout.startswith("probe ")
    assert image < 400, f"the image is {image:.0f} MB"

"""The compose file's demo, run with podman as far as this machine can: the emulator service and
the probe service from the image, with the compose file's own settings (its entrypoint, its
env file), on the host network with free ports in place of the fixed ones.

Prometheus, Alertmanager and Grafana come from their registries' images, which cannot be had
here; their parts (rules, dashboard) are tested in the e2e tests without containers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.container.podman import IMAGE, Containers, build_image, ensure_base_image, podman, require_tools
from tests.helpers import ROOT, free_port, wait_until

DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
EMULATOR_PORT = "8081"


def env_file(template: str, variables: dict[str, str]) -> Path:
    """The env_file the compose file names, with its ${VAR:-default} filled in as compose would."""

    def fill(match: re.Match) -> str:
        return variables.get(match.group(1)) or match.group(2)

    return DEPLOY / re.sub(r"\$\{(\w+):-([^}]*)\}", fill, template)


def read_env(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_demo_profile_adds_the_emulator_and_its_env_file_points_the_probe_at_it() -> None:
    services = COMPOSE["services"]
    assert services["emulator"]["profiles"] == ["demo"]
    assert all("profiles" not in services[s] for s in ("probe", "prometheus", "alertmanager", "grafana"))
    assert services["emulator"]["build"] == services["probe"]["build"]  # the emulator ships in the image
    assert env_file(services["probe"]["env_file"], {}).name == "probe.env"  # a real run as before
    demo = read_env(env_file(services["probe"]["env_file"], {"PROBE_ENV_FILE": "demo.env"}))
    assert demo["ORIGO_ENVIRONMENT"] == "local"
    for key in ("KEYCLOAK_SERVER", "COLLECTOR_URL", "WEBSOCKET_URL"):
        assert f"//emulator:{EMULATOR_PORT}/" in demo[key], key
    assert f"{EMULATOR_PORT}:{EMULATOR_PORT}" in services["emulator"]["ports"]


@pytest.fixture
def containers() -> Iterator[Containers]:
    ours = Containers()
    yield ours
    ours.remove_all()


def test_the_demo_services_run_under_podman_and_the_probe_is_healthy_against_the_emulator(
    containers: Containers,
) -> None:
    require_tools()
    ensure_base_image()
    build_image()
    services = COMPOSE["services"]
    emulator_port, metrics_port = str(free_port()), free_port()

    # The emulator service: its entrypoint as the compose file has it, on a free port.
    entrypoint = [emulator_port if arg == EMULATOR_PORT else arg for arg in services["emulator"]["entrypoint"]]
    emulator = f"{containers.prefix}-emulator"
    containers.names.append(emulator)
    podman(
        "run",
        "--detach",
        "--name",
        emulator,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--entrypoint",
        entrypoint[0],
        IMAGE,
        *entrypoint[1:],
    )

    # The probe service: the demo's env file, "emulator" resolving to the emulator on the host network.
    env = {
        key: value.replace(f"emulator:{EMULATOR_PORT}", f"emulator:{emulator_port}")
        for key, value in read_env(env_file(services["probe"]["env_file"], {"PROBE_ENV_FILE": "demo.env"})).items()
    }
    env.update(EVENT_INTERVAL_SECONDS="0.5", METRICS_PORT=str(metrics_port), STARTUP_WAIT_SECONDS="0")
    volume = containers.volume()
    probe, result = containers.run(
        env, "--add-host", "emulator:127.0.0.1", "--read-only", "--tmpfs", "/tmp", "--volume", f"{volume}:/data"
    )
    assert result.returncode == 0, result.stderr
    base = f"http://127.0.0.1:{metrics_port}"

    def ready() -> bool:
        try:
            return requests.get(f"{base}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, 90, "the demo's probe ready against the emulator service")
        wait_until(
            lambda: "probe_events_received_total{" in requests.get(f"{base}/metrics", timeout=5).text,
            30,
            "events received",
        )
    except AssertionError:
        raise AssertionError(
            f"probe log:\n{containers.logs(probe)[-4000:]}\nemulator log:\n{containers.logs(emulator)[-2000:]}"
        ) from None
    page = requests.get(f"{base}/status", timeout=10)
    assert page.status_code == 200 and 'data-dataset="probe-dataset"' in page.text
    assert containers.running(emulator)

"""Podman for the container tests: the stand-in base image, the probe's image, containers we start.

No registry is reachable here, so `python:3.11-slim` is stood in for by a Debian bookworm
bootstrapped with mmdebstrap, with a virtualenv at /usr/local (the official image's layout:
/usr/local/bin/python and pip) and the host's CA bundle (so pip in the build trusts what the
host trusts). It is built once and kept in podman's store; the probe's image is built from the
Dockerfile with `--pull=never`, exactly as a user would build it, and its layers are cached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import ROOT

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "docker.io/library/python:3.11-slim"
IMAGE = "localhost/dataplatform-probe:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE_CA = "/etc/ssl/certs/host-ca-certificates.crt"
TOOLS = ("podman", "runc", "mmdebstrap")


def require_tools() -> None:
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        pytest.fail(
            f"the container tests need {', '.join(missing)} (Debian: apt-get install podman runc mmdebstrap); "
            "`make test` installs them"
        )


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True, **kw: object) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def ensure_base_image() -> None:
    """The stand-in for python:3.11-slim, unless an image of that name is there already."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    hooks = [
        'chroot "$1" python3 -m venv /usr/local',
        f'cp {HOST_CA} "$1{IMAGE_CA}"',
        'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*',
    ]
    bootstrap = subprocess.Popen(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            *(f"--customize-hook={hook}" for hook in hooks),
            "--format=tar",
            "bookworm",
            "-",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    changes = [
        f"ENV PIP_CERT={IMAGE_CA}",
        f"ENV SSL_CERT_FILE={IMAGE_CA}",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
    ]
    imported = subprocess.run(
        ["podman", "import", *(a for c in changes for a in ("--change", c)), "-", BASE_IMAGE],
        stdin=bootstrap.stdout,
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bootstrap.stdout is not None
    bootstrap.stdout.close()
    errors = bootstrap.stderr.read().decode(errors="replace") if bootstrap.stderr else ""
    assert bootstrap.wait(600) == 0, f"mmdebstrap failed:\n{errors[-3000:]}"
    assert imported.returncode == 0, f"podman import failed:\n{imported.stderr[-3000:]}"


def build_image() -> None:
    """The probe's image, from the Dockerfile, as a user builds it (with the HEALTHCHECK kept)."""
    result = podman(
        "build",
        "--pull=never",
        "--network",
        "host",
        "--format",
        "docker",
        "-t",
        IMAGE,
        str(ROOT),
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"podman build failed:\n{(result.stdout + result.stderr)[-5000:]}"


def image_size_mb() -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()) / 1e6


@dataclass
class Containers:
    """The containers and volumes a test starts, all removed when it ends (ours only, by their names)."""

    prefix: str = field(default_factory=lambda: f"probe-test-{uuid.uuid4().hex[:8]}")
    names: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def volume(self) -> str:
        name = f"{self.prefix}-data-{len(self.volumes)}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def run(
        self, env: dict[str, str], *options: str, detach: bool = True, timeout: float = 60
    ) -> tuple[str, subprocess.CompletedProcess]:
        name = f"{self.prefix}-{len(self.names)}"
        self.names.append(name)
        args = ["run", "--name", name, "--network", "host"]
        if detach:
            args.append("--detach")
        for key in env:
            args += ["--env", key]  # the value through our environment: never on a command line
        result = subprocess.run(
            ["podman", *args, *options, IMAGE],
            env={**podman_env(), **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return name, result

    def logs(self, name: str) -> str:
        result = podman("logs", name, check=False)
        return result.stdout + result.stderr

    def exit_code(self, name: str) -> int:
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip())

    def running(self, name: str) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true"

    def remove_all(self) -> None:
        for name in self.names:
            podman("rm", "--force", "--time", "0", name, check=False)
        for volume in self.volumes:
            podman("volume", "rm", "--force", volume, check=False)

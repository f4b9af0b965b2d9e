"""Where a local client reaches the metrics program: what `probe run` prints, `probe status` and
`probe health` ask, and the metrics program connects to when it stops itself.

Standard library only, and nothing else of the metrics program: the commands import it cheaply.
"""

from __future__ import annotations

from shared.config import Config


def local_host(host: str) -> str:
    """Where a local client reaches a server bound to `host`: a wildcard bind on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def metrics_address(cfg: Config) -> tuple[str, int]:
    """Where a local client reaches the metrics server."""
    return local_host(cfg.metrics_host), cfg.metrics_port


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host

"""The probe under test: its commands and processes, and what they leave behind (the store, the metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testkit.emulator import EmulatorClient
from testkit.process import PYTHON, ROOT, Proc, free_port, start, wait_until


def probe_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "probe_stack.commands.cli", *args]


def stack_env(
    emulator: EmulatorClient, tmp: Path, run_dir: str, metrics_port: int, **settings: object
) -> dict[str, str]:
    """Environment of a whole stack (`probe run`) on this emulator: its own run directory, metrics on loopback."""
    base: dict[str, object] = {
        "PROBE_RUN_DIR": run_dir,
        "METRICS_PORT": metrics_port,
        "METRICS_HOST": "127.0.0.1",
        "STARTUP_WAIT_SECONDS": 10,
    }
    return emulator.env(tmp, **{**base, **settings})


def metrics_env(tmp: Path) -> dict[str, str]:
    """The demo's settings for a metrics program on a free loopback port; its store and metrics directory in `tmp`."""
    metrics = tmp / "metrics"
    metrics.mkdir()
    return {
        "PROBE_CONFIG": str(ROOT / "probe.yaml"),
        "ORIGO_ENVIRONMENT": "local",
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(free_port()),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "PROBE_DB_PATH": str(tmp / "probe.sqlite3"),
    }


def start_probe(kind: str, env: dict[str, str], tmp: Path, tag: str = "") -> Proc:
    """A real probe_sender or probe_listener process, on a store created first, as `probe run` does."""
    from shared.store import Store

    Store(env["PROBE_DB_PATH"]).close()
    return start([PYTHON, "-m", f"probe_{kind}"], tmp / f"{kind}{tag}.log", env=env)


def start_pipeline(emulator: EmulatorClient, env: dict[str, str], tmp: Path, subscriptions: int) -> tuple[Proc, Proc]:
    """(listener, sender): the listener first, subscribed `subscriptions` times before the sender's first post."""
    listener = start_probe("listener", env, tmp)
    try:
        wait_until(lambda: emulator.subscribers() == subscriptions, 15, f"{subscriptions} subscription(s)")
    except AssertionError:
        listener.stop()
        raise
    return listener, start_probe("sender", env, tmp)


@contextmanager
def open_store(env: dict[str, str]) -> Iterator:
    """The store `env` names, closed again afterwards."""
    from shared.store import Store

    store = Store(env["PROBE_DB_PATH"])
    try:
        yield store
    finally:
        store.close()


def store_app_id(env: dict[str, str]) -> str:
    with open_store(env) as store:
        return store.app_id()


def store_in_flight(env: dict[str, str]) -> int:
    """Events neither received nor judged yet (of every dataset)."""
    with open_store(env) as store:
        return sum(store.in_flight().values())


def read_events(env: dict[str, str]) -> list:
    """Every event of the probe instance whose store `env` names, by seqno."""
    with open_store(env) as store:
        return store.events(store.app_id())


def read_metrics(metrics_dir: Path) -> dict[tuple[str, tuple], float]:
    """Every sample aggregated from a multiprocess directory, as the metrics program would serve it."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    samples: dict[tuple[str, tuple], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict[tuple[str, tuple], float], name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls))

"""What a loaded Config and its Datasets answer besides their settings: endpoints, the hosts the
bearer token may go to, the secrets to hide, and the settings as `probe config check` shows them.

Kept apart from the rows (schema) so that the table of settings reads as a table; each method
finds the rows through `rows_of`, the same table the loader uses.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.config.fields import Field, rows_of
from shared.config.urls import AMBIGUOUS_URL, REDACTED, redact_url, url_host, url_password


def shown(f: Field, value: Any) -> Any:
    """A setting's value as it may be shown: a secret hidden, credentials cut out of a URL."""
    if f.secret and value:
        return REDACTED
    if f.kind == "url" or f.name == "authorizer_api":
        return redact_url(value)
    return value


class DatasetViews:
    """One dataset the probe watches: one schedule in the sender, one subscription in the listener.

    `name` is its key in the store and its `dataset` label; it defaults to the dataset id, so the
    single-dataset form keeps the series and the store rows it always had. Its other attributes are
    the per-dataset rows of the schema (`_rows`: those with an `entry`), named by their entry key.
    """

    _rows: tuple[Field, ...] = ()
    name: str
    id: str
    version: str
    collector_url: str

    def collector_endpoint(self) -> str:
        return self.collector_url.format(dataset_id=self.id, version=self.version)

    def posts_a_list(self) -> bool:
        """The collector's `/events/` endpoint takes a list of events, `/event/` one event."""
        return "/events/" in urlsplit(self.collector_url).path

    def redacted(self) -> dict[str, Any]:
        return {"name": self.name} | {f.entry: shown(f, getattr(self, f.entry)) for f in self._rows}


class ConfigViews:
    """Config's methods; the attributes named here are rows of the schema."""

    collector_url: str
    dataset_id: str
    dataset_version: str
    collector_token_hosts: str
    ping_interval_seconds: float
    pong_timeout_seconds: float
    datasets: tuple[DatasetViews, ...]

    def collector_endpoint(self) -> str:
        return self.collector_url.format(dataset_id=self.dataset_id, version=self.dataset_version)

    def token_hosts(self) -> tuple[str, ...]:
        """The hosts the bearer token may be sent to (COLLECTOR_TOKEN_HOSTS; by default the host of
        COLLECTOR_URL): never to one that only a dataset entry or a redirect names."""
        listed = [h.strip().lower() for h in self.collector_token_hosts.split(",") if h.strip()]
        return tuple(listed) or tuple(h for h in (url_host(self.collector_url),) if h)

    def token_allowed(self, url: str) -> bool:
        """Whether the bearer token may go to `url`: its host is on token_hosts(), as `name` (any
        port) or as `name:port` (that port only)."""
        if AMBIGUOUS_URL.search(url):  # its host depends on who reads it: none is allowed
            return False
        try:
            name = (urlsplit(url).hostname or "").lower()
        except ValueError:
            return False
        return bool(name) and any(entry in (url_host(url), name) for entry in self.token_hosts())

    def subscription_fresh_seconds(self) -> float:
        """How recent a subscription's heartbeat must be for it to count as open: a ping, its
        pong timeout and a margin (readiness, the sender's start and `probe check` agree)."""
        return self.ping_interval_seconds + self.pong_timeout_seconds + 2

    def siblings(self, ds: Any) -> frozenset[str]:
        """The other entries on `ds`'s dataset id: its subscription sees their events too."""
        return frozenset(d.name for d in self.datasets if d.id == ds.id and d.name != ds.name)

    def secrets(self) -> list[str]:
        """Values that must never be printed (fed to the log redaction filter)."""
        held = self._values()
        values = [value for value, f in held if f.secret]
        passwords = [url_password(value) for value, f in held if f.kind == "url"]
        return [v for v in values + passwords if v]

    def _values(self) -> list[tuple[Any, Field]]:
        """Every setting's value with its row: the top-level ones, then each dataset's."""
        rows = rows_of(type(self))
        held = [(getattr(self, f.name), f) for f in rows]
        return held + [(getattr(d, f.entry), f) for d in self.datasets for f in rows if f.entry]

    def redacted(self) -> dict[str, Any]:
        """Every setting as `probe config check` shows it: secrets hidden, credentials cut out of URLs."""
        shown_: dict[str, Any] = {f.name: shown(f, getattr(self, f.name)) for f in rows_of(type(self))}
        shown_["datasets"] = [d.redacted() for d in self.datasets]
        return shown_

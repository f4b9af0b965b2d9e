"""How the collector client is put together: one HTTP session and one token for every dataset.

Shared by the sender process and `probe check`, so that the check posts exactly as the
sender does (the same redirect rule, deadline guard and token handling).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import requests

from probe_sender.collector import Collector
from shared import metrics
from shared.auth import TokenProvider
from shared.config import Config, Dataset, url_host
from shared.http_deadline import guard
from shared.tracing import NoTracer

log = logging.getLogger("sender")


def collectors(
    cfg: Config, datasets: Sequence[Dataset], tracer: NoTracer
) -> tuple[TokenProvider | None, list[Collector]]:
    """The datasets' collectors, in their order, sharing one HTTP session and one token; and the
    token's provider (None where posts go without one)."""
    tokens = token_provider(cfg, tracer)
    session = session_for(cfg)
    return tokens, [collector_for(cfg, ds, tokens, session, tracer) for ds in datasets]


def session_for(cfg: Config) -> requests.Session:
    return new_session(min(256, cfg.post_concurrency * len(cfg.datasets)))


def new_session(pool: int) -> requests.Session:
    """The collectors' HTTP session, with connection pools of `pool` connections per host."""
    session = requests.Session()
    session.trust_env = False  # proxies: each collector's own, read once (collector_for); no netrc
    session.max_redirects = 0  # never follow one with a token; the collector treats a 3xx as an error
    # Guarded: each post ends by its deadline in all, even against a peer that drips bytes.
    session.mount("http://", guard(requests.adapters.HTTPAdapter(pool_maxsize=pool)))
    session.mount("https://", guard(requests.adapters.HTTPAdapter(pool_maxsize=pool)))
    return session


def token_provider(cfg: Config, tracer: NoTracer) -> TokenProvider | None:
    """One client and one token for every dataset; its requests are counted under the first."""
    if not cfg.auth_enabled:
        return None
    first = cfg.datasets[0].name
    return TokenProvider(
        cfg.keycloak_server,
        cfg.keycloak_realm,
        cfg.client_id,
        cfg.client_secret,
        cfg.token_refresh_margin_seconds,
        on_request=lambda result: metrics.token_requests.labels(first, result).inc(),
        timeout=cfg.post_timeout_seconds,
        trace=tracer.token_request,
        on_failure=lambda reason: metrics.token_request_errors.labels(first, reason).inc(),
    )


def collector_for(
    cfg: Config, ds: Dataset, tokens: TokenProvider | None, session: requests.Session, tracer: NoTracer
) -> Collector:
    """The dataset's collector, with the proxy the environment names for its URL (HTTP_PROXY and
    the others, unless NO_PROXY excepts its host), decided once per dataset, as datasets may
    live on different hosts."""
    url = ds.collector_endpoint()
    proxies = requests.utils.get_environ_proxies(url)
    if tokens is not None and not (cfg.token_allowed(url) and same_host_to_urllib3(url)):
        log.warning(
            "the bearer token is not sent to %s (dataset %s): its host is not in COLLECTOR_TOKEN_HOSTS (%s)",
            without_path(url),
            ds.name,
            ",".join(cfg.token_hosts()),
        )
        tokens = None
    return Collector(url, tokens, cfg.post_timeout_seconds, session, tracer, ds.posts_a_list(), proxies)


def same_host_to_urllib3(url: str) -> bool:
    """Whether urllib3, which connects, reads the host and port the allow-list checked (urllib.parse's
    reading): where two parsers disagree, the token would go where the check never looked."""
    from urllib.parse import urlsplit

    from urllib3.util import parse_url

    try:
        parts, theirs = urlsplit(url), parse_url(url)
        ours = ((parts.hostname or "").lower(), parts.port)
    except ValueError:  # urllib3's LocationParseError is a ValueError
        return False
    return ours == ((theirs.host or "").strip("[]").lower(), theirs.port)


def without_path(url: str) -> str:
    """scheme://host[:port] of a URL: enough to name it in a log line (no path, query or secret)."""
    from urllib.parse import urlsplit

    return f"{urlsplit(url).scheme}://{url_host(url)}"

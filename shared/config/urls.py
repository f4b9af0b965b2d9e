"""URLs as the configuration shows and trusts them: credentials cut out for showing, the host an
allow-list names, and the characters on which URL parsers disagree."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "<redacted>"

_SECRET_QUERY = ("token", "secret", "password", "key", "auth")

# Characters RFC 3986 never allows unescaped, on which URL parsers disagree: urllib.parse reads the
# host of `http://foreign\@allowed/` as `allowed`, urllib3 (which connects) as `foreign`.
AMBIGUOUS_URL = re.compile(r"[\\\s\x00-\x1f\x7f]")


def redact_url(url: str) -> str:
    """A URL with its password and any token-like query values replaced, for showing."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None or parts.username is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{REDACTED}@{host}"
    query = urlencode(
        [
            (k, REDACTED if any(s in k.lower() for s in _SECRET_QUERY) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="<>",
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_password(url: str) -> str:
    """The password a URL carries (user:password@host), or "": a secret like any other."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def url_host(url: str) -> str:
    """The host of a URL as an allow-list names it: `name`, or `name:port` when the URL gives a port
    (lower case; never the user or password). "" when the URL has none."""
    try:
        parts = urlsplit(url)
        name, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return ""
    if ":" in name:
        name = f"[{name}]"
    return f"{name}:{port}" if name and port is not None else name

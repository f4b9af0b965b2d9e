"""What fills a setting no source gives: the preset of the selected platform (its URLs, and the
emulator's demo identity for `local`, both from `shared.contract`), else the row's default; and
the host name for an instance that names no location."""

from __future__ import annotations

import re
import socket
from typing import Any

from shared.config.schema import FIELDS
from shared.contract import PRESETS

DEFAULT_ENVIRONMENT = "dev"


def apply_preset(values: dict[str, Any], origin: dict[str, str]) -> None:
    """Fill in, in place, every setting the sources left out, saying where each came from."""
    environment = values.get("environment", DEFAULT_ENVIRONMENT)
    preset = PRESETS[environment]
    for field in FIELDS:
        if field.name not in values:
            values[field.name] = preset.get(field.name, field.default)
            origin[field.name] = f"{environment} preset" if field.name in preset else "default"
    if not values["location"]:
        values["location"] = default_location()
        origin["location"] = "default (the host name)"


def default_location() -> str:
    """The host name, as a label value (what a host name may hold, and no more than a label allows)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100].strip("-.")
    return name or "unknown"

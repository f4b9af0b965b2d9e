"""One setting's row, and how a raw value (text from the environment, anything from YAML) becomes
a checked value of its type.

A row is declared as a field of the `Config` dataclass (see `schema`): the field gives the
attribute and its type, `setting(...)` the rest (YAML key, variable, default, help, bounds).
`rows_of` reads them back as `Field`s, the table everything else is derived from.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.config.urls import AMBIGUOUS_URL

ROW = "setting"  # the key of a row in a dataclass field's metadata


class ConfigError(Exception):
    """A setting is wrong; str() is the one line shown to the operator."""


# ---- value parsers: each takes a raw value (str from env, anything from YAML) ----


def _numeric(raw: Any, integer: bool) -> float | int:
    """A number as written: YAML's own, or the text of one (never a YAML true/false)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError
    if isinstance(raw, str):
        return int(raw.strip()) if integer else float(raw.strip())
    return raw


def _number(raw: Any, *, integer: bool) -> float | int:
    value = _numeric(raw, integer)
    if integer and (not isinstance(value, int) and not float(value).is_integer()):
        raise ValueError
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError
    return int(value) if integer else float(value)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError


def text(raw: Any) -> str:
    """A text value. A YAML float would be rewritten (version: 1.10 becomes "1.1"): ask for a quoted string."""
    if isinstance(raw, (dict, list, bool, float)) or raw is None:
        raise ValueError
    return str(raw).strip()


def _buckets(raw: Any) -> tuple[float, ...]:
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError
    values = tuple(float(_number(v, integer=False)) for v in items)
    if any(v <= 0 for v in values) or list(values) != sorted(set(values)):
        raise ValueError
    return values


def _plain(value: float) -> str:
    """A bound as an operator writes it: 1048576, not 1.04858e+06."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


_EXPECTED = {
    "bool": "true or false",
    "buckets": "an increasing list of positive seconds, e.g. 0.05,0.1,0.5,1",
    "str": 'a text (in YAML, quote numbers: "1.10")',
}


@dataclass(frozen=True)
class Field:
    """One setting: its attribute, where it is read, what it may be, and what it means."""

    name: str  # the attribute of Config
    yaml: str  # dotted path in probe.yaml
    env: str
    kind: str  # float, int, bool, str, choice, url, buckets
    default: Any
    help: str
    secret: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    choices: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()
    file_env: str = ""  # env var naming a file that holds the value (secrets)
    entry: str = ""  # its key in an entry of `datasets:` when a dataset may set its own; "" when not

    def expected(self) -> str:
        if self.kind in ("float", "int"):
            return self._expected_number()
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "url":
            schemes = " or ".join(f"{s}://" for s in self.schemes)
            return f"a URL starting with {schemes} (no backslash, space or control character)"
        return _EXPECTED[self.kind]

    def _expected_number(self) -> str:
        what = "a whole number" if self.kind == "int" else "a number (fractions allowed)"
        if self.minimum is not None:
            what += f" {'>' if self.exclusive_min else '>='} {_plain(self.minimum)}"
        if self.maximum is not None:
            what += f" and <= {_plain(self.maximum)}"
        return what

    def parse(self, raw: Any) -> Any:
        """Convert and check one raw value; ValueError means 'not what is expected'."""
        if self.kind in ("float", "int"):
            return self._bounded(_number(raw, integer=self.kind == "int"))
        if self.kind == "bool":
            return _bool(raw)
        if self.kind == "buckets":
            return _buckets(raw)
        return self._checked_text(text(raw))

    def _bounded(self, value: float) -> float:
        low_bad = self.minimum is not None and (value <= self.minimum if self.exclusive_min else value < self.minimum)
        if low_bad or (self.maximum is not None and value > self.maximum):
            raise ValueError
        return value

    def _checked_text(self, value: str) -> str:
        if self.kind == "choice" and value not in self.choices:
            raise ValueError
        if self.kind == "url" and value:
            parts = urlsplit(value)
            if parts.scheme not in self.schemes or not parts.netloc or AMBIGUOUS_URL.search(value):
                raise ValueError
        return value


def setting(
    yaml: str,
    env: str,
    default: Any,
    help: str,
    *,
    within: tuple[float, float] | None = None,
    above: float | None = None,
    **kw: Any,
) -> Any:
    """A field of Config that is a setting, with the rest of its row. Bounds: `within=(low, high)`,
    both included; `above=low` excludes the minimum (with `maximum=high`)."""
    if within is not None:
        kw.update(minimum=within[0], maximum=within[1])
    if above is not None:
        kw.update(minimum=above, exclusive_min=True)
    return dataclasses.field(metadata={ROW: {"yaml": yaml, "env": env, "default": default, "help": help, **kw}})


_KINDS = {"str": "str", "float": "float", "int": "int", "bool": "bool", "tuple[float, ...]": "buckets"}


@functools.cache
def rows_of(cls: type) -> tuple[Field, ...]:
    """The settings of a dataclass, in declaration order; the kind follows from the attribute's type."""
    rows = []
    for f in dataclasses.fields(cls):
        if ROW not in f.metadata:
            continue
        row = f.metadata[ROW]
        kind = _KINDS[str(f.type)]
        if kind == "str" and (row.get("choices") or row.get("schemes")):
            kind = "choice" if row.get("choices") else "url"
        rows.append(Field(name=f.name, kind=kind, **row))
    return tuple(rows)

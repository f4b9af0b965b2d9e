"""The datasets a configuration watches. The single-dataset form (DATASET_ID, the `dataset:` key)
becomes a list of one here, before validation, so that validation sees one shape: entries, each
with the place it was written (which names it in an error).

An entry of `datasets:` may set every per-dataset setting (a row of the schema with an `entry`
key); what it leaves out it takes from the top-level settings.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shared import shard as shard_mod
from shared.config.fields import ConfigError, Field, text
from shared.config.schema import BY_NAME, DATASET_FIELDS, Dataset
from shared.config.sources import read_secret_file, show

MAX_DATASETS = 200
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,99}")

# The keys of one entry of `datasets:` in probe.yaml, with the setting each one defaults to
# ("" for those that are not settings: the entry's name, a file holding its secret).
DATASET_KEYS: dict[str, str] = {"name": ""}
for _f in DATASET_FIELDS:
    DATASET_KEYS[_f.entry] = _f.name
    if _f.file_env:
        DATASET_KEYS[f"{_f.entry}_file"] = ""


def label(field: Field, origin: Mapping[str, str]) -> str:
    """A top-level setting as the operator wrote it: its YAML key or variable, and where."""
    where = origin.get(field.name, "default")
    return f"{field.yaml if where.startswith('in ') else field.env} ({where})"


class Place(Protocol):
    """Where a dataset's settings were written, which is what an error about them names."""

    def subject(self, key: str) -> str:
        """The start of a sentence about the dataset's `key`: "<setting> is ..." follows."""
        ...

    def name(self, key: str) -> str:
        """`key` as the operator wrote it, for "<name> = value: ..."."""
        ...

    def missing(self, key: str) -> ConfigError | None:
        """The error for an empty `key`, or None where the global check of required settings names it."""
        ...

    def unset(self, dataset: Any) -> list[Field]:
        """The top-level settings the dataset needs and nobody gave (for that global check)."""
        ...


@dataclass(frozen=True)
class TopLevel:
    """The single-dataset form: its settings are the top-level ones, named as such."""

    origin: Mapping[str, str]

    def subject(self, key: str) -> str:
        return f"{self.name(key)}: "

    def name(self, key: str) -> str:
        return label(BY_NAME[DATASET_KEYS[key]], self.origin)

    def missing(self, key: str) -> ConfigError | None:
        if key not in ("id", "version"):
            return None
        return ConfigError(f"{self.subject(key)}must not be empty; set {BY_NAME[DATASET_KEYS[key]].env}")

    def unset(self, dataset: Any) -> list[Field]:
        keys = ("webhook_token", "collector_url", "websocket_url")
        return [BY_NAME[DATASET_KEYS[key]] for key in keys if not getattr(dataset, key)]


@dataclass(frozen=True)
class ListEntry:
    """An entry of `datasets:`, named by its index, its name and the file."""

    index: int
    dataset_name: str
    config_path: Path

    def subject(self, key: str) -> str:
        return f"{self.name(key)} "

    def name(self, key: str) -> str:
        return f"datasets[{self.index}] ({self.dataset_name}, in {self.config_path}): {key}"

    def missing(self, key: str) -> ConfigError | None:
        setting = BY_NAME[DATASET_KEYS[key]]
        also = f" (or {setting.file_env})" if setting.file_env else ""
        return ConfigError(f"{self.subject(key)}is missing: give it in the entry, or set {setting.env}{also} for all")

    def unset(self, dataset: Any) -> list[Field]:
        return []


@dataclass(frozen=True)
class Entry:
    dataset: Dataset
    place: Place


def expand(
    values: Mapping[str, Any],
    origin: dict[str, str],
    entries: list[Any] | None,
    config_path: Path,
    for_reading: bool,
) -> tuple[Entry, ...]:
    """Every dataset configured: the `datasets:` list, or a list of one made of the top-level settings."""
    if entries is None:
        single = {f.entry: _inherited(values, f) for f in DATASET_FIELDS}
        return (Entry(Dataset(name=values["dataset_id"], **single), TopLevel(origin)),)
    for name in ("dataset_id", "dataset_version"):
        where = origin[name]
        if where.startswith("in ") or "environment" in where:
            raise ConfigError(
                f"datasets (in {config_path}) and {label(BY_NAME[name], origin)} are both given: use one form, "
                "the datasets list or the single dataset"
            )
    listed = _dataset_list(entries, values, config_path, for_reading)
    origin["datasets"] = f"in {config_path}"
    return listed


def _inherited(top: Mapping[str, Any], field: Field) -> Any:
    return top[field.name] if top[field.name] is not None else ""


def _dataset_list(
    entries: list[Any], top: Mapping[str, Any], config_path: Path, for_reading: bool
) -> tuple[Entry, ...]:
    """Each entry of `datasets:`, what it leaves out taken from the top-level settings."""
    if not entries:
        raise ConfigError(f"datasets (in {config_path}): the list is empty; give at least one entry with its id")
    if len(entries) > MAX_DATASETS:
        raise ConfigError(f"datasets (in {config_path}): {len(entries)} entries; at most {MAX_DATASETS} are allowed")
    out: list[Entry] = []
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        label_ = f"datasets[{index}] (in {config_path})"
        _check_keys(entry, label_)
        values = {f.entry: _entry_value(entry, f, top, label_) for f in DATASET_FIELDS}
        values |= _secrets(entry, config_path, label_, for_reading)
        name = _entry_name(entry, values["id"], label_)
        if name in names:
            raise ConfigError(
                f"{label_}: name {name!r} is also the name of datasets[{names[name]}]; "
                "give each entry a distinct name (two entries of one dataset id need a name each)"
            )
        names[name] = index
        out.append(Entry(Dataset(name=name, **values), ListEntry(index, name, config_path)))
    return tuple(out)


def _check_keys(entry: Any, label_: str) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{label_}: expected a mapping with at least id")
    for key in entry:
        if key not in DATASET_KEYS:
            close = difflib.get_close_matches(str(key), list(DATASET_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f"; the keys are {', '.join(DATASET_KEYS)}"
            raise ConfigError(f"{label_}: {key!r} is not a key of a dataset entry{hint}")
    if "id" not in entry:
        raise ConfigError(f"{label_}: id is missing; every entry names its dataset id")


def _entry_value(entry: Mapping[str, Any], field: Field, top: Mapping[str, Any], label_: str) -> Any:
    if field.entry not in entry:
        return _inherited(top, field)
    try:
        return field.parse(entry[field.entry])
    except (ValueError, TypeError):
        raise ConfigError(
            f"{label_}: {field.entry} = {show(field, entry[field.entry])}: expected {field.expected()}"
        ) from None


def _secrets(entry: Mapping[str, Any], config_path: Path, label_: str, for_reading: bool) -> dict[str, str]:
    """The entry's secrets read from the files it names (relative to the configuration file), or
    blanked `for_reading`, since the commands that only read use none."""
    out = {}
    for field in DATASET_FIELDS:
        if not field.secret:
            continue
        key = f"{field.entry}_file"
        if for_reading:
            out[field.entry] = ""
        elif key in entry:
            if field.entry in entry:
                raise ConfigError(f"{label_}: give {field.entry} or {key}, not both")
            path = Path(text(entry[key]))
            path = path if path.is_absolute() else config_path.resolve().parent / path
            out[field.entry] = read_secret_file(f"{label_}: {key}", str(path))
    return out


def _entry_name(entry: Mapping[str, Any], dataset_id: str, label_: str) -> str:
    name = text(entry["name"]) if "name" in entry else dataset_id
    if not DATASET_NAME.fullmatch(name):
        raise ConfigError(
            f"{label_}: name {name!r} is not a usable name: letters, digits and . _ / : - only, "
            "at most 100, starting with a letter or digit (the name is the `dataset` label)"
        )
    return name


def shard_part(entries: tuple[Entry, ...], text_: str, label_: str) -> tuple[Entry, ...]:
    """The entries this instance watches under PROBE_SHARD (all of them when it is empty)."""
    try:
        shard = shard_mod.parse(text_)
    except ValueError as exc:
        raise ConfigError(f"{label_} = {text_[:40]!r}: {exc}") from None
    mine = shard_mod.watched([e.dataset.id for e in entries], shard)
    part = tuple(e for e, watched in zip(entries, mine, strict=True) if watched)
    if not part:
        raise ConfigError(
            f"{label_} = {text_!r}: shard {shard} watches none of the {len(entries)} datasets of the list "
            "(their ids hash to other shards); use fewer shards"
        )
    return part

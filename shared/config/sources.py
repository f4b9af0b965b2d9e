"""Where values come from: the environment (with the original service's names and a word on
typos), the YAML file, and secret files. Each value is parsed by its row and remembered with
where it came from, so that an error names the very key or variable the operator wrote.

Precedence, highest first: a secret file named by the environment, the environment variable,
the YAML file (then presets and defaults: see `presets`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shared.config.fields import ConfigError, Field
from shared.config.schema import BY_YAML, FIELDS
from shared.config.urls import REDACTED
from shared.small_file import NotSmallFile, read_small

# The original service's names where ours means the same thing: accepted, with a warning.
ALIASES = {
    "OKDATA_ENVIRONMENT": "ORIGO_ENVIRONMENT",
    "OKDATA_CLIENT_ID": "ORIGO_CLIENT_ID",
    "OKDATA_CLIENT_SECRET": "ORIGO_CLIENT_SECRET",
    "DISMISS_EVENT_TIMEOUT_SECONDS": "LOSS_TIMEOUT_SECONDS",
}
# The original service's names that mean nothing here: ignored, with a warning that says why.
IGNORED = {
    "CLEAN_EVENTS_INTERVAL_SECONDS": "judged events are pruned after RETENTION_SECONDS, in small batches",
    "LOCAL_RUN": "use ORIGO_ENVIRONMENT=local, or `make run` for the demo against the emulator",
}
# Variables read elsewhere (by `probe run`, the emulator, supervisord's configuration).
OTHER_VARIABLES = frozenset(
    {
        "PROBE_CONFIG",
        "PROBE_RUN_DIR",
        "PROBE_PYTHON",
        "PROBE_WORKDIR",
        "PROBE_FATAL_MARKER",
        "EMULATOR_FAULTS",
        "EMULATOR_CLIENT_SECRET",
        "EMULATOR_WEBHOOK_TOKEN",
        "SUPERVISOR_USER",
        "SUPERVISOR_PASSWORD",
        "SUPERVISOR_LOGLEVEL",
        "AWS_XRAY_DAEMON_ADDRESS",
    }
)
OUR_PREFIXES = ("PROBE_", "ORIGO_", "OKDATA_")
UNIT_SUFFIXES = ("_SECONDS", "_BYTES")
MAX_SECRET_FILE_BYTES = 65536
# A configuration file is a few KB. Bounds for what one may hold: its size, and how many values it
# expands to (YAML aliases can make a few hundred bytes into billions of values).
MAX_CONFIG_FILE_BYTES = 1048576
MAX_CONFIG_VALUES = 100_000


@dataclass(frozen=True)
class Environment:
    """The variables to read, with the original's names mapped to ours."""

    variables: Mapping[str, str]
    renamed: Mapping[str, str]  # our name -> the original's name it was read from
    warnings: tuple[str, ...]


def environment(env: Mapping[str, str]) -> Environment:
    """The environment as the probe reads it, with a warning for each name it will not read as given."""
    variables, renamed, warnings = _aliases(env)
    warnings += [f"{old} is not used by this probe (ignored): {why}" for old, why in IGNORED.items() if old in env]
    warnings += _strangers(env)
    return Environment(variables, renamed, tuple(warnings))


def _aliases(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    variables, renamed, warnings = dict(env), {}, []
    for old, new in ALIASES.items():
        if old not in env:
            continue
        if new in env and env[new] != env[old]:
            raise ConfigError(f"{old} and {new} (environment variables) disagree; {old} is the old name: unset it")
        variables.setdefault(new, env[old])
        renamed[new] = old
        warnings.append(f"{old} is the original service's name of {new}; it is read, but set {new} instead")
    return variables, renamed, warnings


def _strangers(env: Mapping[str, str]) -> list[str]:
    """A word on each variable that looks meant for the probe but is none of its names."""
    known = {f.env for f in FIELDS} | {f.file_env for f in FIELDS if f.file_env} | OTHER_VARIABLES
    known_all = known | set(ALIASES) | set(IGNORED)
    warnings = []
    for name in sorted(set(env) - known_all):
        # A unit left off (LOSS_TIMEOUT for LOSS_TIMEOUT_SECONDS) is too far for difflib's ratio.
        close = [f"{name}{unit}" for unit in UNIT_SUFFIXES if f"{name}{unit}" in known]
        close = close or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.85)
        if close:
            warnings.append(f"{name} is not a setting of the probe (ignored); did you mean {close[0]}?")
        elif name.startswith(OUR_PREFIXES):
            warnings.append(f"{name} is not a setting of the probe (ignored); `probe config docs` lists them")
    return warnings


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and any(k.startswith(path + ".") for k in BY_YAML):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def value_count(doc: object, limit: int) -> int:
    """How many values a parsed document holds with every alias expanded (keys included), counted
    up to just past `limit`; no recursion."""
    count, stack = 0, [doc]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a setting written twice is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    return f" line {mark.line + 1}" if mark else ""


def _parse_document(path: Path) -> Any:
    """The YAML document of `path`, or a one-line ConfigError saying why there is none."""
    try:
        return yaml.load(read_small(path, MAX_CONFIG_FILE_BYTES).decode("utf-8"), Loader=_UniqueKeyLoader)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror}); set PROBE_CONFIG") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not UTF-8 text") from None
    except NotSmallFile as exc:
        raise ConfigError(f"config file {path}: {exc}; set PROBE_CONFIG to a configuration file") from None
    except RecursionError:
        raise ConfigError(f"config file {path}: nested too deeply to be a configuration") from None
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"config file {path}{_line(exc)}: {exc.problem}; write each setting once") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}{_line(exc)}: not valid YAML; fix the syntax") from None


def read_yaml(path: Path) -> tuple[dict[str, Any], list[Any] | None]:
    """(the settings by dotted key, the raw `datasets:` list or None)."""
    doc = _parse_document(path)
    if doc is None:
        return {}, None
    if value_count(doc, MAX_CONFIG_VALUES) > MAX_CONFIG_VALUES:
        raise ConfigError(f"config file {path}: expands to more than {MAX_CONFIG_VALUES} values (YAML aliases?)")
    if not isinstance(doc, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings at the top level")
    datasets = doc.pop("datasets", None)
    if "datasets" in {str(k) for k in doc} or (datasets is not None and not isinstance(datasets, list)):
        raise ConfigError(f"datasets (in {path}): expected a list of entries, each a mapping with at least id")
    values = _flatten(doc)
    for key in values:
        if key not in BY_YAML:
            raise ConfigError(f"{key} (in {path}): unknown setting; see the settings table in docs/settings.md")
    return values, datasets


def show(field: Field, raw: Any) -> str:
    """A raw value as an error may quote it: never a secret's."""
    return REDACTED if field.secret else repr(raw)


def read_secret_file(label: str, file_path: str) -> str:
    """A secret from a file, refusing what cannot be a secret file; never shows a byte of it."""
    try:
        data = read_small(file_path, MAX_SECRET_FILE_BYTES)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read {file_path} ({exc.strerror})") from None
    except NotSmallFile as exc:
        what = "is too large to be a secret" if "larger" in str(exc) else "is not a regular file"
        raise ConfigError(f"{label}: {file_path} {what}") from None
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{label}: {file_path} is not UTF-8 text") from None


@dataclass(frozen=True)
class Found:
    """A raw value, where it was found (for `probe config check`) and the name the operator wrote."""

    raw: Any
    where: str
    label: str


def find(field: Field, env: Environment, from_file: Mapping[str, Any], config_path: Path) -> Found | None:
    """The raw value of one setting from the highest source that has it, or None."""
    variables = env.variables
    if field.file_env and variables.get(field.file_env):
        raw = read_secret_file(f"{field.file_env} (environment variable)", variables[field.file_env])
        return Found(raw, f"file named by {field.file_env}", field.file_env)
    if field.env in variables:
        old = env.renamed.get(field.env)
        return Found(variables[field.env], f"environment variable {old}" if old else "environment variable", field.env)
    if field.yaml in from_file:
        return Found(from_file[field.yaml], f"in {config_path}", field.yaml)
    return None


def read_settings(
    env: Environment, from_file: Mapping[str, Any], config_path: Path, for_reading: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """(value, origin) of every setting some source gives; secrets skipped `for_reading`."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in FIELDS:
        found = None if field.secret and for_reading else find(field, env, from_file, config_path)
        if found is None or found.raw is None:
            continue
        try:
            values[field.name] = field.parse(found.raw)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{found.label} ({found.where}) = {show(field, found.raw)}: expected {field.expected()}"
            ) from None
        origin[field.name] = found.where
    return values, origin

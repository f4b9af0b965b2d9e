"""`load`: the stages in their order. Sources give values (environment over YAML over presets and
defaults), the datasets are expanded to a list, the result is validated, and what loading found
out (origins, warnings) travels with the Config for `probe config check` and `probe run`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.config.datasets import expand, label, shard_part
from shared.config.fields import ConfigError
from shared.config.presets import apply_preset
from shared.config.schema import BY_NAME, Config
from shared.config.sources import Environment, environment, read_settings, read_yaml
from shared.config.validate import validate

DEFAULT_CONFIG_PATH = "probe.yaml"


def load(env: Mapping[str, str] | None = None, path: str | None = None, *, for_reading: bool = False) -> Config:
    """Read, merge and validate every setting; raise ConfigError naming the first bad one.

    Relative paths in the settings (store, metrics directory) are taken relative to
    the configuration file's directory when a file was read, so that every command
    finds the same store from any working directory.

    `for_reading`: for the commands that only read what a running stack left (`probe status`,
    `probe ctl`, `probe health`): no secret is read or required, since they use none and an
    operator's second terminal rarely has them.
    """
    seen = environment(os.environ if env is None else env)
    config_path, read_file = _config_file(path or seen.variables.get("PROBE_CONFIG"))
    from_file, dataset_list = read_yaml(config_path) if read_file else ({}, None)
    values, origin = read_settings(seen, from_file, config_path, for_reading)
    apply_preset(values, origin)
    if read_file:
        _relative_to(config_path.resolve().parent, values)
    entries = expand(values, origin, dataset_list, config_path, for_reading)
    watched = shard_part(entries, values["shard"], label(BY_NAME["shard"], origin))
    cfg = Config(
        **values,
        origin=origin,
        config_file=str(config_path.resolve()) if read_file else "",
        warnings=seen.warnings,
        datasets=tuple(e.dataset for e in watched),
        configured=tuple(e.dataset for e in entries),
    )
    validate(cfg, watched, config_path, for_reading)
    return cfg if for_reading else _ready_to_run(cfg, seen)


def _config_file(named: str | None) -> tuple[Path, bool]:
    """The configuration file, and whether to read it: one that was named must be there."""
    config_path = Path(named or DEFAULT_CONFIG_PATH)
    return config_path, bool(named) or config_path.exists()


def _relative_to(base: Path, values: dict[str, Any]) -> None:
    """The store and the metrics directory, when relative, are the configuration file's neighbours."""
    for name in ("db_path", "metrics_dir"):
        value = values[name]
        if value and value != ":memory:" and not value.startswith("file:") and not Path(value).is_absolute():
            values[name] = os.path.normpath(base / value)


def _ready_to_run(cfg: Config, seen: Environment) -> Config:
    """What only a run needs: a word on each dataset posted without the token, and X-Ray's settings
    checked (read-only commands post and trace nothing)."""
    if cfg.auth_enabled:  # never silent: these datasets' posts go without the token
        withheld = [d.name for d in cfg.datasets if not cfg.token_allowed(d.collector_endpoint())]
        if withheld:
            note = (
                f"the bearer token is not sent to the collector of {', '.join(withheld)}: its host is not in "
                f"COLLECTOR_TOKEN_HOSTS ({','.join(cfg.token_hosts())})"
            )
            cfg = replace(cfg, warnings=(*cfg.warnings, note))
    # Never silent: a template without {dataset_id} posts every such dataset to one URL as given,
    # so a wrong URL would show up later as "dataset not known to the collector".
    fixed = [d.name for d in cfg.datasets if "{dataset_id}" not in d.collector_url]
    if fixed:
        note = (
            f"the collector URL of {', '.join(fixed)} has no {{dataset_id}} placeholder: "
            "its events are posted to that URL as given, whatever the dataset's id and version"
        )
        cfg = replace(cfg, warnings=(*cfg.warnings, note))
    if cfg.xray_enabled:
        from shared.tracing import check_settings

        problem = check_settings(seen.variables.get("AWS_XRAY_DAEMON_ADDRESS"), cfg.xray_sampling_rules)
        if problem:
            raise ConfigError(problem)
    return cfg


def config_read(cfg: Config) -> str:
    """Which configuration a reading command used, for its line when it finds no store or stack: an
    operator who forgot the stack's PROBE_CONFIG (the demo's) reads another one's, and is told so."""
    read = cfg.config_file or "no configuration file (defaults and environment)"
    return f"read {read}: is that the stack's? Its banner prints the command, PROBE_CONFIG and all"

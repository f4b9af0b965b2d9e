"""All configuration parsing and validation: probe.yaml plus environment overrides.

One table of rows (the fields of `Config`, in `schema`) says, for every setting, its attribute,
its YAML key, its environment variable, its type, its default and whether it is a secret.
Everything else (parsing, the one-line errors, `probe config check`, the docs' settings table)
is derived from it, so a setting cannot be documented in one place and parsed differently in
another. The stages, one module each, in the order `load` runs them:

- `sources`: the environment (with the original service's names and typo warnings), the YAML
  file, secret files;
- `presets`: what the selected platform (local/dev/prod, from `shared.contract`) or the default
  fills in;
- `datasets`: the `datasets:` list, or the single-dataset form as a list of one;
- `validate`: the rules between settings, and one validator every dataset passes.

Precedence, highest first: environment variable, YAML file, the preset of the selected
environment (local/dev/prod), the built-in default. This module only re-exports the names the
rest of the tree uses.
"""

from shared.config.datasets import DATASET_KEYS, DATASET_NAME, MAX_DATASETS
from shared.config.fields import ConfigError, Field
from shared.config.loader import DEFAULT_CONFIG_PATH, config_read, load
from shared.config.presets import DEFAULT_ENVIRONMENT, default_location
from shared.config.schema import DEFAULT_LATENCY_BUCKETS, FIELDS, Config, Dataset, settings_table
from shared.config.sources import (
    ALIASES,
    IGNORED,
    MAX_CONFIG_FILE_BYTES,
    MAX_CONFIG_VALUES,
    MAX_SECRET_FILE_BYTES,
    OTHER_VARIABLES,
    value_count,
)
from shared.config.urls import AMBIGUOUS_URL, REDACTED, redact_url, url_host
from shared.config.validate import LABEL_VALUE, PLACEHOLDERS
from shared.contract import (
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    LOCAL_EMULATOR_PORT,
    LOCAL_WEBHOOK_TOKEN,
    MAX_EVENT_BYTES,
    PRESETS,
    REALM,
)

__all__ = [
    "ALIASES",
    "AMBIGUOUS_URL",
    "DATASET_KEYS",
    "DATASET_NAME",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_LATENCY_BUCKETS",
    "FIELDS",
    "IGNORED",
    "LABEL_VALUE",
    "LOCAL_CLIENT_ID",
    "LOCAL_CLIENT_SECRET",
    "LOCAL_EMULATOR_PORT",
    "LOCAL_WEBHOOK_TOKEN",
    "MAX_CONFIG_FILE_BYTES",
    "MAX_CONFIG_VALUES",
    "MAX_DATASETS",
    "MAX_EVENT_BYTES",
    "MAX_SECRET_FILE_BYTES",
    "OTHER_VARIABLES",
    "PLACEHOLDERS",
    "PRESETS",
    "REALM",
    "REDACTED",
    "Config",
    "ConfigError",
    "Dataset",
    "Field",
    "config_read",
    "default_location",
    "load",
    "redact_url",
    "settings_table",
    "url_host",
    "value_count",
]

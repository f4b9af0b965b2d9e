"""Command-line flags of `probe emulator`; defaults match the local demo in probe.yaml."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields

from emulator.faults import Faults
from shared.config import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, LOCAL_EMULATOR_PORT, LOCAL_WEBHOOK_TOKEN

# Secrets come through these variables, so that they never stand on a command line.
SECRET_ENV = "EMULATOR_CLIENT_SECRET"
TOKEN_ENV = "EMULATOR_WEBHOOK_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=LOCAL_EMULATOR_PORT, help="port (default %(default)s)")
    parser.add_argument("--realm", default="api-catalog", help="Keycloak realm (default %(default)s)")
    parser.add_argument("--client-id", default=LOCAL_CLIENT_ID, help="accepted client id (default %(default)s)")
    parser.add_argument(
        "--client-secret",
        default=os.environ.get(SECRET_ENV, LOCAL_CLIENT_SECRET),
        help=f"accepted client secret (default: ${SECRET_ENV}, else the demo's); prefer the variable",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="ID[/VERSION]",
        help="dataset that exists, repeatable (default probe-dataset/1)",
    )
    parser.add_argument(
        "--webhook-token",
        default=os.environ.get(TOKEN_ENV, LOCAL_WEBHOOK_TOKEN),
        help=f"read token of every dataset (default: ${TOKEN_ENV}, else the demo's); prefer the variable",
    )
    parser.add_argument(
        "--idle-close-seconds", type=float, default=600.0, help="close silent connections (default 600)"
    )
    parser.add_argument(
        "--max-connection-seconds",
        type=float,
        default=7200.0,
        help="close every connection after (default 7200)",
    )
    parser.add_argument(
        "--faults",
        default="{}",
        metavar="JSON",
        help="initial fault settings as JSON, same keys as PUT /_emulator/faults: "
        + ", ".join(f.name for f in fields(Faults)),
    )
    parser.add_argument(
        "--no-collector-auth", action="store_true", help="the collector accepts posts without a bearer token"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice (repeatable runs)")
    parser.add_argument("--log-level", default="INFO", help="log level (default INFO)")

"""Command-line flags of `probe emulator`, and the emulator they describe; defaults match the demo (deploy/demo.yaml).

Only the standard library and `emulator.faults` at import: `probe` builds its parser from
these flags on every call, and aiohttp is imported only when an emulator is built.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from typing import TYPE_CHECKING

from emulator.faults import FaultError, Faults
from shared.contract import LOCAL_CLIENT_ID, LOCAL_CLIENT_SECRET, LOCAL_EMULATOR_PORT, LOCAL_WEBHOOK_TOKEN, REALM

if TYPE_CHECKING:
    from emulator.server import Emulator

# Secrets come through these variables, so that they never stand on a command line.
SECRET_ENV = "EMULATOR_CLIENT_SECRET"
TOKEN_ENV = "EMULATOR_WEBHOOK_TOKEN"
# Set: every /_emulator/ control but health needs `Authorization: Bearer <it>`. Unset: open (the demo).
CONTROL_TOKEN_ENV = "EMULATOR_CONTROL_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=LOCAL_EMULATOR_PORT, help="port (default %(default)s)")
    parser.add_argument("--realm", default=REALM, help="Keycloak realm (default %(default)s)")
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


def parser(prog: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog=prog, description="Run the local stand-in of the dataplatform.")
    add_arguments(result)
    return result


def build(args: argparse.Namespace) -> Emulator:
    """The emulator the parsed flags describe; ValueError or FaultError (a ValueError) when they cannot work."""
    from emulator.server import Emulator, Settings

    datasets: dict[str, set[str]] = {}
    for spec in args.dataset or ["probe-dataset/1"]:
        name, _, version = spec.partition("/")
        datasets.setdefault(name, set()).add(version or "1")
    settings = Settings(
        realm=args.realm,
        client_id=args.client_id,
        client_secret=args.client_secret,
        datasets=datasets,
        webhook_tokens={name: args.webhook_token for name in datasets},
        idle_close_seconds=args.idle_close_seconds,
        max_connection_seconds=args.max_connection_seconds,
        collector_auth=not args.no_collector_auth,
        control_token=os.environ.get(CONTROL_TOKEN_ENV, ""),
    )
    changes = json.loads(args.faults)
    if not isinstance(changes, dict):
        raise FaultError("--faults: expected a JSON object of fault settings")
    if args.seed is not None:
        changes["seed"] = args.seed
    return Emulator(settings, Faults().updated(changes))

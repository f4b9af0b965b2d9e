"""`probe emulator` / `python -m emulator`: run the local stand-in of the dataplatform."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys

from aiohttp import web

from emulator.faults import FaultError, Faults
from emulator.options import add_arguments
from emulator.server import Emulator, Settings


def build(args: argparse.Namespace) -> Emulator:
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
    )
    changes = json.loads(args.faults)
    if not isinstance(changes, dict):
        raise FaultError("--faults: expected a JSON object of fault settings")
    if args.seed is not None:
        changes["seed"] = args.seed
    return Emulator(settings, Faults().updated(changes))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s emulator %(levelname)s %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        emulator = build(args)
    except (ValueError, FaultError) as exc:
        print(f"probe emulator: {exc}", file=sys.stderr)
        return 2

    def listening(_: str) -> None:  # once bound: a port that cannot be had gets one line, not this
        print(f"emulator listening on http://{args.host}:{args.port}", flush=True)

    try:
        web.run_app(emulator.app(), host=args.host, port=args.port, print=listening, access_log=None)
    except OSError as exc:  # the port is taken, or the address is not this machine's
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = "; stop what listens there, or choose another --port" if exc.errno == errno.EADDRINUSE else ""
        print(f"probe emulator: cannot listen on {args.host}:{args.port}: {why}{hint}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m emulator") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Run the local stand-in of the dataplatform.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

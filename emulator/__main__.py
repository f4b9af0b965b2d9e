"""`probe emulator` / `python -m emulator`: run the local stand-in of the dataplatform."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from aiohttp import web

from emulator.faults import FaultError
from emulator.options import build, parser
from emulator.server import SHUTDOWN_SECONDS


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
        web.run_app(
            emulator.app(),
            host=args.host,
            port=args.port,
            print=listening,
            access_log=None,
            shutdown_timeout=SHUTDOWN_SECONDS,
        )
    except OSError as exc:  # the port is taken, or the address is not this machine's
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = "; stop what listens there, or choose another --port" if exc.errno == errno.EADDRINUSE else ""
        print(f"probe emulator: cannot listen on {args.host}:{args.port}: {why}{hint}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m emulator") -> int:
    return run(parser(prog).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

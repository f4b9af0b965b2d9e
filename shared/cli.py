"""The `probe` command: one entry point for operators, supervisord and the tests.

Subcommands import their modules lazily: prometheus_client must not be imported
before PROMETHEUS_MULTIPROC_DIR is set, and `probe config check` must stay cheap.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared import config as config_mod

EXIT_CONFIG = 2


def load_config_or_exit() -> config_mod.Config:
    """Load the configuration; on error print the one-line reason and exit 2."""
    try:
        return config_mod.load()
    except config_mod.ConfigError as exc:
        print(f"probe: config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _config_check(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit()
    effective = cfg.redacted()
    if args.json:
        print(json.dumps(effective, indent=2, default=list))
    else:
        width = max(len(k) for k in effective)
        for key, value in effective.items():
            print(f"{key:<{width}}  {value}")
        print("configuration OK")
    return 0


def _config_docs(_: argparse.Namespace) -> int:
    print("| YAML key | Environment variable | Default | Meaning |")
    print("|---|---|---|---|")
    for key, env, default, help_text in config_mod.settings_table():
        print(f"| `{key}` | `{env}` | `{default}` | {help_text} |")
    return 0


def _sender(_: argparse.Namespace) -> int:
    from probe_sender.__main__ import main

    return main()


def _listener(_: argparse.Namespace) -> int:
    from probe_listener.__main__ import main

    return main()


def _metrics(_: argparse.Namespace) -> int:
    from shared.metrics_server import main

    return main()


def _status(args: argparse.Namespace) -> int:
    from shared.status import main

    return main(limit=args.last, as_json=args.json)


def _emulator(args: argparse.Namespace) -> int:
    from emulator.__main__ import run

    return run(args)


def _run(args: argparse.Namespace) -> int:
    from shared.stack import run

    return run(with_emulator=args.with_emulator)


def _prepare(_: argparse.Namespace) -> int:
    from shared.stack import prepare

    return prepare()


def _ctl(args: argparse.Namespace) -> int:
    from shared.stack import ctl

    return ctl(args.args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probe", description="dataplatform-probe: end-to-end pipeline monitor")
    sub = parser.add_subparsers(dest="command", required=True)

    cfg = sub.add_parser("config", help="validate or document the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    check = cfg_sub.add_parser("check", help="validate and print the effective configuration (secrets redacted)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=_config_check)
    docs = cfg_sub.add_parser("docs", help="print the settings table (Markdown)")
    docs.set_defaults(func=_config_docs)

    sub.add_parser("sender", help="run the sender process").set_defaults(func=_sender)
    sub.add_parser("listener", help="run the listener process").set_defaults(func=_listener)
    sub.add_parser("metrics", help="serve the aggregated metrics on METRICS_PORT").set_defaults(func=_metrics)

    status = sub.add_parser("status", help="show recent events and totals from the store")
    status.add_argument("--last", type=int, default=20, metavar="N", help="how many recent events (default 20)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_status)

    run = sub.add_parser("run", help="run the supervised stack (sender, listener, metrics) in the foreground")
    run.add_argument(
        "--with-emulator", action="store_true", help="also start the local emulator and point the probe at it"
    )
    run.set_defaults(func=_run)
    sub.add_parser(
        "prepare", help="validate config and reset the metrics directory (container entrypoint step)"
    ).set_defaults(func=_prepare)

    ctl = sub.add_parser("ctl", help="supervisorctl for the running stack, e.g. `probe ctl restart sender`")
    ctl.add_argument("args", nargs=argparse.REMAINDER, help="supervisorctl command (status, restart sender, ...)")
    ctl.set_defaults(func=_ctl)

    from emulator.options import add_arguments

    emu = sub.add_parser("emulator", help="run the local dataplatform emulator")
    add_arguments(emu)
    emu.set_defaults(func=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

"""The `probe` command: one entry point for operators, the container and the tests.

Subcommands import their modules lazily: prometheus_client must not be imported
before PROMETHEUS_MULTIPROC_DIR is set, and `probe config check` must stay cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from shared import config as config_mod
from shared.exits import ExitStatus
from shared.lifecycle import load_config_or_exit
from shared.version import VERSION


def _config_check(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit()
    for warning in cfg.warnings:
        print(f"probe: warning: {warning}", file=sys.stderr)
    effective = cfg.redacted()
    if args.json:
        doc = {
            "config_file": cfg.config_file or None,
            "settings": {k: {"value": v, "from": cfg.origin.get(k, "default")} for k, v in effective.items()},
            "warnings": list(cfg.warnings),
            "shard": {"watched": [ds.name for ds in cfg.datasets], "of": len(cfg.configured)},
        }
        print(json.dumps(doc, indent=2, default=list))
        return ExitStatus.OK
    _print_config(cfg, effective)
    print("configuration OK")
    return ExitStatus.OK


def _print_config(cfg: config_mod.Config, effective: dict) -> None:
    print(f"config file: {cfg.config_file or '(none found; defaults and environment only)'}")
    datasets = effective.pop("datasets")
    width = max(len(k) for k in effective)
    value_width = min(60, max(len(str(v)) for v in effective.values()))
    for key, value in effective.items():
        print(f"{key:<{width}}  {value!s:<{value_width}}  ({cfg.origin.get(key, 'default')})")
    where = cfg.origin.get("datasets", "the single-dataset settings above").removeprefix("in ")
    if cfg.shard:
        print(f"datasets: shard {cfg.shard} watches {len(datasets)} of the {len(cfg.configured)} (from {where}):")
    else:
        print(f"datasets ({len(datasets)}, from {where}):")
    for ds in datasets:
        print(
            f"  {ds['name']}: {ds['id']}/{ds['version']} every {ds['interval_seconds']:g}s, "
            f"loss timeout {ds['loss_timeout_seconds']:g}s, payload {ds['payload_bytes']} bytes, "
            f"post {ds['collector_url'].format(dataset_id=ds['id'], version=ds['version'])}, "
            f"subscribe {ds['websocket_url']}"
        )


def _config_docs(_: argparse.Namespace) -> int:
    print("| YAML key | Environment variable | Default | Meaning |")
    print("|---|---|---|---|")
    for key, env, default, help_text in config_mod.settings_table():
        print(f"| `{key}` | `{env}` | `{default}` | {help_text} |")
    return ExitStatus.OK


def _status(args: argparse.Namespace) -> int:
    from probe_stack.commands.status import main

    return main(limit=args.last, as_json=args.json, dataset=args.dataset)


class _Stopped(KeyboardInterrupt):
    """SIGTERM, SIGHUP or SIGINT, unwinding like Ctrl-C (so that every `finally` runs: scratch files go)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_by_signal(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def _check(args: argparse.Namespace) -> int:
    from probe_stack.commands.check import run

    cfg = load_config_or_exit("probe check")
    if args.count < 1 or args.count > 1000 or not 0 < args.timeout <= 3600:
        print("probe check: --count must be 1 to 1000 and --timeout 0 to 3600 seconds", file=sys.stderr)
        return ExitStatus.CONFIG
    # SIGINT too: a process started with it ignored (a test runner's worker, a script's `&`)
    # inherits that, and Python then installs no Ctrl-C handler of its own.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _stop_by_signal)
    try:
        return run(cfg, args.count, args.timeout, args.json, args.dataset)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        print(f"probe check: stopped by {signal.Signals(signum).name}; nothing was left behind", file=sys.stderr)
        return 128 + signum


def _health(args: argparse.Namespace) -> int:
    from probe_stack.commands.health import check

    return check(load_config_or_exit("probe health", for_reading=True), "/readyz" if args.ready else "/healthz")


def _emulator(args: argparse.Namespace) -> int:
    from emulator.__main__ import run

    return run(args)


def _run(args: argparse.Namespace) -> int:
    from probe_stack.runtime.run import run

    return run(with_emulator=args.with_emulator)


def _ctl(args: argparse.Namespace) -> int:
    from probe_stack.runtime.ctl import ctl

    return ctl(args.args)


def _rules(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probe_deploy.alerting import ParamsError, load_params, render, render_prometheus_rule

    try:
        params = load_params(Path(args.params))
    except (OSError, ParamsError) as exc:
        print(f"probe rules: {exc}", file=sys.stderr)
        return ExitStatus.CONFIG
    sys.stdout.write((render_prometheus_rule if args.prometheus_rule else render)(params, args.params))
    return ExitStatus.OK


def _dashboard(args: argparse.Namespace) -> int:
    from probe_deploy.dashboard import render

    sys.stdout.write(render())
    return ExitStatus.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probe", description="dataplatform-probe: end-to-end pipeline monitor")
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, text: str, **kw: object) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, **kw)

    cfg = add("config", "validate or document the configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    text = "validate and print the effective configuration (secrets redacted); exit 2 with one line when invalid"
    check = cfg_sub.add_parser("check", help=text, description=text)
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=_config_check)
    text = "print the settings table (Markdown), as in docs/settings.md"
    cfg_sub.add_parser("docs", help=text, description=text).set_defaults(func=_config_docs)

    status = add("status", "show recent events and totals from the store")
    status.add_argument("--last", type=int, default=20, metavar="N", help="how many recent events (default 20)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument("--dataset", metavar="NAME", help="only this dataset (its name in the configuration)")
    status.set_defaults(func=_status)

    check = add(
        "check",
        "post a few events to every dataset and wait for them: exit 0 when all arrived (deploy pipelines, on-call)",
    )
    check.add_argument("--count", type=int, default=3, help="events per dataset (default %(default)s)")
    check.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for them (default %(default)s)")
    check.add_argument("--dataset", metavar="NAME", help="only this dataset (its name in the configuration)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=_check)

    health = add("health", "ask the running stack's metrics program: exit 0 when healthy (the container's HEALTHCHECK)")
    health.add_argument("--ready", action="store_true", help="ask /readyz (events flowing) instead of /healthz")
    health.set_defaults(func=_health)

    run = add("run", "run the supervised stack (sender, listener, metrics) in the foreground")
    run.add_argument(
        "--with-emulator", action="store_true", help="also start the local emulator and point the probe at it"
    )
    run.set_defaults(func=_run)

    ctl = add("ctl", "supervisorctl for the running stack, e.g. `probe ctl restart sender`")
    ctl.add_argument("args", nargs=argparse.REMAINDER, help="supervisorctl command (status, restart sender, ...)")
    ctl.set_defaults(func=_ctl)

    rules = add("rules", "print the Prometheus alert and recording rules generated from the alert parameters")
    rules.add_argument(
        "--params",
        default="deploy/prometheus/alert-params.yaml",
        metavar="FILE",
        help="the parameters file (default %(default)s)",
    )
    rules.add_argument(
        "--prometheus-rule",
        action="store_true",
        help="as a Kubernetes PrometheusRule (Prometheus Operator), as deploy/kubernetes/ ships it",
    )
    rules.set_defaults(func=_rules)
    add("dashboard", "print the Grafana dashboard (JSON)").set_defaults(func=_dashboard)

    # The emulator's flags are parsed here like every other subcommand's (a REMAINDER positional
    # refused a leading option, `--help` included); its server, and aiohttp, load only when it runs.
    from emulator.options import add_arguments

    emu = add("emulator", "run the local dataplatform emulator (`probe emulator --help` lists its flags)")
    add_arguments(emu)
    emu.set_defaults(func=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`probe config check | head -3`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.OK


if __name__ == "__main__":
    raise SystemExit(main())

"""Command line: ``ventra`` (window), ``serve``, ``selftest``, ``ledger verify``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any

from app.core.config import RETRY_SCHEDULES, ConfigError, Settings, load_settings
from app.core.database import DatabaseStartError
from app.core.logs import configure

log = logging.getLogger("ventra.cli")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is out of range; use 0 to 65535")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= 300:
        raise argparse.ArgumentTypeError(f"{value} is out of range; use 0.1 to 300")
    return value


def _server_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    parser.add_argument("--data-dir", default=default, help="data directory (default: the per-user one)")
    parser.add_argument(
        "--database-url", default=default, help="external PostgreSQL URL instead of the embedded one"
    )
    parser.add_argument(
        "--ventra-port", type=_port, default=default, help="Ventra port; 0 picks a free one"
    )
    parser.add_argument(
        "--sim-port", type=_port, default=default, help="VentraSim port; 0 picks a free one"
    )
    parser.add_argument(
        "--retry-schedule", choices=RETRY_SCHEDULES, default=default, help="webhook retry schedule"
    )
    parser.add_argument(
        "--delivery-timeout",
        type=_seconds,
        default=default,
        help="seconds to wait for each webhook response",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ventra",
        description="Ventra, a sandbox Pix escrow platform, and VentraSim, its merchant."
        " Without a command, opens the window.",
    )
    _server_options(parser)
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the servers without a window")
    # SUPPRESS: an option given before "serve" is kept, not reset to None.
    _server_options(serve, default=argparse.SUPPRESS)
    serve.add_argument("--only", choices=("ventra", "sim"), help="run one side only")

    selftest = commands.add_parser("selftest", help="run the end-to-end flow once")
    selftest.add_argument("--database-url", help="use this PostgreSQL instead of an embedded one")
    selftest.add_argument(
        "--sim-secret",
        help="store this secret on the VentraSim side instead of Ventra's,"
        " to see the signature step fail",
    )
    selftest.add_argument("--timeout", type=_seconds, default=30.0, help="seconds to wait for webhooks")

    ledger = commands.add_parser("ledger", help="ledger tools")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    verify = ledger_commands.add_parser("verify", help="check the ledger invariants")
    verify.add_argument("--data-dir")
    verify.add_argument("--database-url")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Apply command-line options over the configuration."""
    settings = load_settings(getattr(args, "data_dir", None))
    changes: dict[str, object] = {}
    for option, name in (
        ("database_url", "database_url"),
        ("ventra_port", "ventra_port"),
        ("sim_port", "sim_port"),
        ("retry_schedule", "retry_schedule"),
        ("delivery_timeout", "delivery_timeout"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            changes[name] = value
    only = getattr(args, "only", None)
    if only == "ventra":
        changes["run_sim"] = False
    elif only == "sim":
        changes["run_ventra"] = False
    return settings.with_changes(**changes)


async def serve(settings: Settings) -> int:
    """Run the servers until SIGINT or SIGTERM."""
    from app.stack import Stack

    stack = Stack(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    info = await stack.start()
    print(json.dumps(info.ready_line()), flush=True)
    log.info("ready ventra_url=%s sim_url=%s", info.ventra_url, info.sim_url)
    await stop.wait()
    log.info("stopping")
    await stack.stop()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure()
    try:
        if args.command == "serve":
            return asyncio.run(serve(settings_from(args)))
        if args.command == "selftest":
            from app.selftest import run_selftest

            return run_selftest(args)
        if args.command == "ledger":
            from app.ledger_cli import verify_ledger

            return asyncio.run(verify_ledger(settings_from(args)))
        from app.desktop import run_window

        return run_window(settings_from(args))
    except (ConfigError, DatabaseStartError) as exc:
        print(f"ventra: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ventra: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `calltracker` command: one module per command group, this one puts them together."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from calltracker import logs
from calltracker.cli import accounts, adspend, calls, catalog, demo, integrations, serve
from calltracker.errors import CalltrackerError
from calltracker.settings import Settings, SettingsError


def setup_logging(level: str, fmt: str = "kv") -> None:
    logs.configure(level, fmt)  # key=value lines, or JSON (calltracker/logs.py)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calltracker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (serve, demo, catalog, accounts, integrations, adspend, calls):
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"calltracker: configuration error: {err}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        result: int = args.func(settings, args)
        return result
    except CalltrackerError as err:
        print(f"calltracker: {err.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

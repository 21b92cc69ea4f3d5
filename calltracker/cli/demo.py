"""`calltracker demo`: the demo site, its sample data, a token and the first console login."""

from __future__ import annotations

import argparse
from typing import Any

from calltracker.cli.common import run_in_session
from calltracker.demo.site import create_demo
from calltracker.settings import Settings


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="create the demo site, pool, static numbers and a token")
    p.set_defaults(func=cmd_demo)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    for line in run_in_session(settings, create_demo):
        print(line)
    return 0

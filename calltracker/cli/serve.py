"""`calltracker serve` and `calltracker migrate`: the only commands that change the schema."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from calltracker.db.migrate import upgrade
from calltracker.errors import CalltrackerError
from calltracker.settings import Settings
from calltracker.web import server


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the web server (migrates the database first)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--no-migrate", action="store_true")
    p.add_argument(
        "--workers",
        type=int,
        help="processes serving the port (default CALLTRACKER_WORKERS, 1); above 1 needs Redis",
    )
    # Internal: marks a process the parent started as one of its workers.
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_migrate)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.host
    port = args.port or settings.port
    if args.worker_index is not None:  # started by the parent (calltracker/web/server.py)
        return server.run_worker(settings, host, port, args.worker_index)
    count = settings.workers if args.workers is None else args.workers
    if count < 1:
        raise CalltrackerError("--workers must be 1 or more")
    if count > 1 and not settings.uses_redis:
        # Each process would keep its own pool: two visitors could get the same number.
        raise CalltrackerError(
            "--workers above 1 needs CALLTRACKER_REDIS_URL (the number pool shared by the workers)"
        )
    if not args.no_migrate:
        asyncio.run(upgrade(settings.database_url))  # once, before any worker starts
    return server.serve(settings, host, port, count)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(upgrade(settings.database_url, args.revision))
    print(f"database is at revision {args.revision}")
    return 0

"""The `calltracker` command: serve, migrate, demo, and the catalog and token commands."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from calltracker import logs
from calltracker.accounts import tokens, users
from calltracker.catalog import simulation as pool_simulation
from calltracker.catalog import sites
from calltracker.cli import calls as call_cli
from calltracker.cli import integrations as integration_cli
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.db.migrate import upgrade
from calltracker.demo.sample import seed_demo
from calltracker.errors import CalltrackerError
from calltracker.settings import Settings, SettingsError
from calltracker.web import server

DEMO_SITE_KEY = "demo"
DEMO_DEFAULT_NUMBER = "+74950000000"
DEMO_POOL = [f"+7495100{i:04d}" for i in range(1, 21)]
DEMO_STATIC = [
    ("+74952000001", "billboard", "outdoor", "tverskaya-2026"),
    ("+74952000002", "radio", "offline", "europa-plus-spring"),
]


def setup_logging(level: str, fmt: str = "kv") -> None:
    logs.configure(level, fmt)  # key=value lines, or JSON (calltracker/logs.py)


async def with_session(
    settings: Settings, work: Callable[[Any], Awaitable[Any]], *, migrate: bool = True
) -> Any:
    if migrate:
        await upgrade(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


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


async def create_demo(session: Any, *, sample_data: bool = True) -> list[str]:
    lines: list[str] = []
    try:
        site = await sites.get_site(session, DEMO_SITE_KEY)
        lines.append(f"demo site exists: key={site.key} id={site.id}")
    except sites.UnknownSite:
        site = await sites.create_site(
            session,
            key=DEMO_SITE_KEY,
            name="Demo shop",
            domains=["127.0.0.1", "localhost"],
            default_number=DEMO_DEFAULT_NUMBER,
            country="RU",
            timezone="Europe/Moscow",
        )
        pool = await sites.create_pool(session, site, name="main", hold_seconds=15 * 60)
        await sites.add_pool_numbers(session, pool, DEMO_POOL)
        for number, source, medium, campaign in DEMO_STATIC:
            await sites.add_static_number(
                session, site, number, source=source, medium=medium, campaign=campaign
            )
        lines += [
            f"created demo site: key={site.key} id={site.id} domains=127.0.0.1,localhost",
            f"  default number {DEMO_DEFAULT_NUMBER}",
            f"  pool 'main' (id {pool.id}): {len(DEMO_POOL)} numbers "
            f"{DEMO_POOL[0]}..{DEMO_POOL[-1]}, hold 15 min",
        ]
        lines += [f"  static {n}: {s} / {m} / {c}" for n, s, m, c in DEMO_STATIC]
        if sample_data:
            # A month of sample traffic, so the report page has something to show at once.
            demo = await seed_demo(session, site)
            lines.append(
                f"  report sample data {demo.first_day}..{demo.last_day}: {demo.visits} visits, "
                f"{demo.calls} calls, {demo.spend_rows} spend rows, {demo.deals} deals"
            )
    _, token = await tokens.create_token(session, name="demo-admin", role="admin")
    lines.append(f"admin API token (shown once): {token}")
    lines.append(await create_demo_admin(session))
    return lines


async def create_demo_admin(session: Any) -> str:
    """The console's first login: user `admin` with a random password, printed once."""
    try:
        await users.get_user(session, "admin")
        return "console user 'admin' exists; new password: calltracker user passwd admin"
    except users.UnknownUser:
        password = users.generate_password()
        await users.create_user(session, username="admin", role="admin", password=password)
        return f"console login (shown once): user admin, password {password}"


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    for line in asyncio.run(with_session(settings, create_demo)):
        print(line)
    return 0


def cmd_site_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> str:
        site = await sites.create_site(
            session,
            key=args.key,
            name=args.name or args.key,
            domains=args.domain,
            default_number=args.default_number,
            country=args.country,
            timezone=args.timezone,
            pooled_mediums=args.pooled_medium,
        )
        return f"site {site.id} key={site.key} default={site.default_number}"

    print(asyncio.run(with_session(settings, work)))
    return 0


def cmd_site_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> list[str]:
        return [
            f"{s.id}\t{s.key}\t{s.name}\t{s.default_number}\t{','.join(s.domains)}"
            for s in await sites.list_sites(session)
        ]

    print("id\tkey\tname\tdefault\tdomains")
    for line in asyncio.run(with_session(settings, work)):
        print(line)
    return 0


def _read_numbers(args: argparse.Namespace) -> list[str]:
    numbers = list(args.number)
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        numbers += [line.strip() for line in text.splitlines() if line.strip()]
    return numbers


def cmd_pool_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> str:
        site = await sites.get_site(session, args.site)
        pool = await sites.create_pool(
            session, site, name=args.name, hold_seconds=args.hold, policy=args.policy
        )
        numbers = _read_numbers(args)
        if numbers:
            await sites.add_pool_numbers(session, pool, numbers)
        return f"pool {pool.id} for site {site.key}: {len(numbers)} numbers, hold {args.hold}s"

    print(asyncio.run(with_session(settings, work)))
    return 0


def cmd_pool_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> list[str]:
        out = []
        for p in await sites.list_pools(session):
            count = len(
                [
                    n
                    for n in await sites.list_numbers(session, p.site_id, "pool")
                    if n.pool_id == p.id
                ]
            )
            out.append(f"{p.id}\t{p.site_id}\t{p.name}\t{count}\t{p.hold_seconds}\t{p.policy}")
        return out

    print("id\tsite\tname\tnumbers\thold_s\tpolicy")
    for line in asyncio.run(with_session(settings, work)):
        print(line)
    return 0


def cmd_pool_simulate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        scenario = pool_simulation.Scenario(
            visitors_per_hour=pool_simulation.parse_hourly(args.visitors_per_hour),
            pool_size=args.size,
            hold_seconds=args.hold,
            grace_seconds=settings.grace_seconds if args.grace is None else args.grace,
            visit_minutes=args.visit_minutes,
            call_rate=args.call_rate,
            during_visit=args.during_visit,
            call_delays=pool_simulation.parse_delays(args.call_delay),
            policy=args.policy,
            days=args.days,
            seed=args.seed,
        )
    except ValueError as err:
        raise CalltrackerError(f"pool simulate: {err}") from None
    outcome = pool_simulation.simulate(scenario)
    targets = args.target or [0.99, 0.995]
    if not all(0 < t <= 1 for t in targets):
        raise CalltrackerError("pool simulate: --target is a share, e.g. 0.99")
    sizes = pool_simulation.sizes_for(scenario, targets)
    for line in pool_simulation.describe(scenario, outcome, sizes):
        print(line)
    return 0


def add_simulate_parser(pool: Any) -> None:
    p = pool.add_parser(
        "simulate",
        help="expected attribution accuracy of a pool size, and the size needed",
        description="Simulates visits and calls (seeded) and matches calls as the server does.",
    )
    p.add_argument(
        "--visitors-per-hour",
        default="120",
        help="a flat rate, or 24 comma-separated rates from hour 0 (default 120)",
    )
    p.add_argument("--size", type=int, default=20, help="numbers in the pool (default 20)")
    p.add_argument("--hold", type=float, default=900, help="hold time in seconds (default 900)")
    p.add_argument("--grace", type=float, help="grace window in seconds (default the setting)")
    p.add_argument("--visit-minutes", type=float, default=4.0, help="mean visit length")
    p.add_argument("--call-rate", type=float, default=0.03, help="share of visitors who call")
    p.add_argument(
        "--during-visit", type=float, default=0.5, help="share of calls made during the visit"
    )
    p.add_argument(
        "--call-delay",
        default=pool_simulation.format_delays(pool_simulation.DEFAULT_DELAYS),
        help="minutes after the visit for the other calls, LOW-HIGH:WEIGHT,...",
    )
    p.add_argument("--policy", default="default_number", choices=pool_simulation.POLICIES)
    p.add_argument("--days", type=float, default=7.0, help="simulated days (default 7)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--target",
        type=float,
        action="append",
        help="accuracy to size the pool for (repeat; default 0.99 and 0.995)",
    )
    p.set_defaults(func=cmd_pool_simulate, target=None)


def cmd_number_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> str:
        pool = await sites.get_pool(session, args.pool)
        rows = await sites.add_pool_numbers(session, pool, _read_numbers(args))
        return f"added {len(rows)} numbers to pool {pool.id}"

    print(asyncio.run(with_session(settings, work)))
    return 0


def cmd_number_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> list[str]:
        site_id = (await sites.get_site(session, args.site)).id if args.site else None
        return [
            f"{n.id}\t{n.number}\t{n.site_id}\t{n.kind}\t{n.pool_id or ''}\t"
            f"{'/'.join(x for x in (n.source, n.medium, n.campaign) if x)}"
            for n in await sites.list_numbers(session, site_id, args.kind)
        ]

    print("id\tnumber\tsite\tkind\tpool\tlabel")
    for line in asyncio.run(with_session(settings, work)):
        print(line)
    return 0


def cmd_static_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> str:
        site = await sites.get_site(session, args.site)
        row = await sites.add_static_number(
            session,
            site,
            args.number,
            source=args.source,
            medium=args.medium,
            campaign=args.campaign,
        )
        return f"static number {row.number} -> {row.source} / {row.medium} / {row.campaign}"

    print(asyncio.run(with_session(settings, work)))
    return 0


def cmd_token_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> str:
        row, token = await tokens.create_token(session, name=args.name, role=args.role)
        return f"token {row.id} ({row.role}, {row.name}); shown once:\n{token}"

    print(asyncio.run(with_session(settings, work)))
    return 0


def cmd_token_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> list[str]:
        return [
            f"{t.id}\t{t.role}\t{t.name}\t{t.created_at:%Y-%m-%d}\t{'revoked' if t.revoked_at else ''}"
            for t in await tokens.list_tokens(session)
        ]

    print("id\trole\tname\tcreated\tstate")
    for line in asyncio.run(with_session(settings, work)):
        print(line)
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> bool:
        return await tokens.revoke_token(session, args.id)

    if not asyncio.run(with_session(settings, work)):
        print(f"no active token {args.id}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked")
    return 0


def read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated): from stdin, a prompt, or random when there is no terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if not sys.stdin.isatty():
        return users.generate_password(), True
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat it: "):
        raise CalltrackerError("the passwords differ")
    return first, False


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    password, generated = read_password(args)

    async def work(session: Any) -> str:
        user = await users.create_user(
            session,
            username=args.username,
            role=args.role,
            password=password,
            extension=args.extension,
        )
        return f"user {user.id} {user.username} ({user.role})"

    print(asyncio.run(with_session(settings, work)))
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_user_passwd(settings: Settings, args: argparse.Namespace) -> int:
    password, generated = read_password(args)

    async def work(session: Any) -> str:
        user = await users.get_user(session, args.username)
        await users.set_password(session, user, password)
        return f"password of {user.username} changed; their sessions were ended"

    print(asyncio.run(with_session(settings, work)))
    if generated:
        print(f"password (shown once): {password}")
    return 0


def cmd_user_token(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> str:
        user = await users.get_user(session, args.username)
        row, token = await users.create_user_token(session, user.id, args.name)
        return f"token {row.id} ({row.role}, {row.name}); shown once:\n{token}"

    print(asyncio.run(with_session(settings, work)))
    return 0


def cmd_user_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: Any) -> list[str]:
        return [
            f"{u.id}\t{u.username}\t{u.role}\t{u.extension}\t{'disabled' if u.disabled else ''}"
            for u in await users.list_users(session)
        ]

    print("id\tusername\trole\textension\tstate")
    for line in asyncio.run(with_session(settings, work)):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="calltracker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("demo", help="create the demo site, pool, static numbers and a token")
    p.set_defaults(func=cmd_demo)

    site = sub.add_parser("site", help="sites").add_subparsers(dest="action", required=True)
    p = site.add_parser("add")
    p.add_argument("key")
    p.add_argument("--name", default="")
    p.add_argument("--domain", action="append", default=[], help="repeat for each domain")
    p.add_argument("--default-number", required=True)
    p.add_argument("--country", default="RU")
    p.add_argument("--timezone", default="UTC")
    p.add_argument(
        "--pooled-medium",
        action="append",
        default=[],
        help="only these mediums get pooled numbers (repeat); default: all traffic",
    )
    p.set_defaults(func=cmd_site_add)
    site.add_parser("list").set_defaults(func=cmd_site_list)

    pool = sub.add_parser("pool", help="number pools").add_subparsers(dest="action", required=True)
    p = pool.add_parser("add")
    p.add_argument("site", help="site key or id")
    p.add_argument("--name", default="main")
    p.add_argument("--hold", type=int, default=15 * 60, help="hold time in seconds")
    p.add_argument("--policy", default="default_number", choices=["default_number", "share_oldest"])
    p.add_argument("number", nargs="*")
    p.add_argument("--file", help="one number per line; - for stdin")
    p.set_defaults(func=cmd_pool_add)
    pool.add_parser("list").set_defaults(func=cmd_pool_list)
    add_simulate_parser(pool)  # `pool simulate`: calltracker/pool_simulation.py

    number = sub.add_parser("number", help="pooled numbers").add_subparsers(
        dest="action", required=True
    )
    p = number.add_parser("add")
    p.add_argument("pool", type=int)
    p.add_argument("number", nargs="*")
    p.add_argument("--file", help="one number per line; - for stdin")
    p.set_defaults(func=cmd_number_add)
    p = number.add_parser("list")
    p.add_argument("--site")
    p.add_argument("--kind", choices=["pool", "static"])
    p.set_defaults(func=cmd_number_list)

    static = sub.add_parser("static", help="static numbers for offline ads").add_subparsers(
        dest="action", required=True
    )
    p = static.add_parser("add")
    p.add_argument("site", help="site key or id")
    p.add_argument("number")
    p.add_argument("--source", required=True, help="e.g. billboard")
    p.add_argument("--medium", default="offline", help="e.g. outdoor")
    p.add_argument("--campaign", default="", help="e.g. tverskaya-2026")
    p.set_defaults(func=cmd_static_add)
    p = static.add_parser("list")
    p.add_argument("--site")
    p.set_defaults(func=cmd_number_list, kind="static")

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    p = token.add_parser("create")
    p.add_argument("--role", required=True, choices=["admin", "marketer", "operator"])
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_token_create)
    token.add_parser("list").set_defaults(func=cmd_token_list)
    p = token.add_parser("revoke")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_token_revoke)

    user = sub.add_parser("user", help="console users").add_subparsers(dest="action", required=True)
    p = user.add_parser("add", help="add a user (asks for the password)")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=["admin", "marketer", "operator"])
    p.add_argument("--extension", default="", help="an operator's phone extension")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("passwd", help="set a user's password; ends their sessions")
    p.add_argument("username")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_user_passwd)
    p = user.add_parser("token", help="create an API token that acts as the user")
    p.add_argument("username")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_user_token)
    user.add_parser("list").set_defaults(func=cmd_user_list)

    integration_cli.add_parser(sub, with_session)  # calltracker/integration_cli.py
    call_cli.add_parser(sub)  # calltracker/call_cli.py: call simulate, calls import-cdr
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

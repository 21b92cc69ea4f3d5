"""`calltracker site|pool|number|static ...`: the catalog from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.catalog import simulation as pool_simulation
from calltracker.catalog import sites
from calltracker.catalog.service import CatalogService
from calltracker.cli.common import print_table, run_in_session, run_with_catalog
from calltracker.errors import CalltrackerError
from calltracker.settings import Settings
from number_pool import ExhaustionPolicy


def add_parser(sub: Any) -> None:
    site = sub.add_parser("site", help="sites").add_subparsers(dest="action", required=True)
    p = site.add_parser("add")
    p.add_argument("key")
    p.add_argument("--name", default="")
    p.add_argument("--domain", action="append", default=[], help="repeat for each domain")
    p.add_argument("--default-number", required=True)
    p.add_argument("--country", help=f"ISO 3166 code (default {sites.DEFAULT_COUNTRY})")
    p.add_argument("--timezone", help=f"IANA time zone (default {sites.DEFAULT_TIMEZONE})")
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
    p.add_argument("--name", help=f"default {sites.DEFAULT_POOL_NAME!r}")
    p.add_argument(
        "--hold", type=int, help=f"hold time in seconds (default {sites.DEFAULT_HOLD_SECONDS})"
    )
    p.add_argument("--policy", choices=[p.value for p in ExhaustionPolicy])
    p.add_argument("number", nargs="*")
    p.add_argument("--file", help="one number per line; - for stdin")
    p.set_defaults(func=cmd_pool_add)
    pool.add_parser("list").set_defaults(func=cmd_pool_list)
    add_simulate_parser(pool)  # `pool simulate`: catalog/simulation.py

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
    p.add_argument("--medium", help=f"e.g. outdoor (default {sites.DEFAULT_STATIC_MEDIUM})")
    p.add_argument("--campaign", default="", help="e.g. tverskaya-2026")
    p.set_defaults(func=cmd_static_add)
    p = static.add_parser("list")
    p.add_argument("--site")
    p.set_defaults(func=cmd_number_list, kind="static")


def cmd_site_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(catalog: CatalogService) -> str:
        site = await catalog.create_site(
            key=args.key,
            name=args.name,
            domains=args.domain,
            default_number=args.default_number,
            country=args.country,
            timezone=args.timezone,
            pooled_mediums=args.pooled_medium,
        )
        return f"site {site.id} key={site.key} default={site.default_number}"

    print(run_with_catalog(settings, work))
    return 0


def cmd_site_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> list[str]:
        return [
            f"{s.id}\t{s.key}\t{s.name}\t{s.default_number}\t{','.join(s.domains)}"
            for s in await sites.list_sites(session)
        ]

    print_table("id\tkey\tname\tdefault\tdomains", run_in_session(settings, work))
    return 0


def _read_numbers(args: argparse.Namespace) -> list[str]:
    numbers = list(args.number)
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        numbers += [line.strip() for line in text.splitlines() if line.strip()]
    return numbers


def cmd_pool_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(catalog: CatalogService) -> str:
        pool, added = await catalog.create_pool(
            args.site,
            name=args.name,
            hold_seconds=args.hold,
            policy=args.policy,
            numbers=_read_numbers(args),
        )
        return (
            f"pool {pool.id} for site {pool.site_id}: {len(added)} numbers, "
            f"hold {pool.hold_seconds}s"
        )

    print(run_with_catalog(settings, work))
    return 0


def cmd_pool_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> list[str]:
        numbers = await sites.list_numbers(session, kind="pool")
        return [
            f"{p.id}\t{p.site_id}\t{p.name}\t{sum(n.pool_id == p.id for n in numbers)}\t"
            f"{p.hold_seconds}\t{p.policy}"
            for p in await sites.list_pools(session)
        ]

    print_table("id\tsite\tname\tnumbers\thold_s\tpolicy", run_in_session(settings, work))
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
    async def work(catalog: CatalogService) -> str:
        rows = await catalog.add_pool_numbers(args.pool, _read_numbers(args))
        return f"added {len(rows)} numbers to pool {args.pool}"

    print(run_with_catalog(settings, work))
    return 0


def cmd_number_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(session: AsyncSession) -> list[str]:
        site_id = (await sites.get_site(session, args.site)).id if args.site else None
        return [
            f"{n.id}\t{n.number}\t{n.site_id}\t{n.kind}\t{n.pool_id or ''}\t"
            f"{'/'.join(x for x in (n.source, n.medium, n.campaign) if x)}"
            for n in await sites.list_numbers(session, site_id, args.kind)
        ]

    print_table("id\tnumber\tsite\tkind\tpool\tlabel", run_in_session(settings, work))
    return 0


def cmd_static_add(settings: Settings, args: argparse.Namespace) -> int:
    async def work(catalog: CatalogService) -> str:
        row = await catalog.add_static_number(
            args.site, args.number, source=args.source, medium=args.medium, campaign=args.campaign
        )
        return f"static number {row.number} -> {row.source} / {row.medium} / {row.campaign}"

    print(run_with_catalog(settings, work))
    return 0

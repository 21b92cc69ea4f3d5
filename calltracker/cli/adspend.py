"""`calltracker adspend ...`: ad accounts pulled from the ad platforms, their sync and
backfill, unmapped spend, the campaign mapping, and currency rates."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.adspend import accounts, store
from calltracker.adspend.registry import PLATFORMS
from calltracker.adspend.service import RoundResult, SyncRunner, SyncSettings
from calltracker.adspend.sync import Window
from calltracker.catalog import sites
from calltracker.cli.common import database, run_in_session
from calltracker.cli.integrations import read_config
from calltracker.clock import utcnow
from calltracker.db.adspend_models import AdAccount
from calltracker.errors import Invalid
from calltracker.reports import money, rates
from calltracker.reports.rows import BadRows
from calltracker.settings import Settings

USER_AGENT = "calltracker/0.1"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def add_parser(sub: Any) -> None:
    """Register the `adspend` command group on the CLI's subparsers."""
    group = sub.add_parser("adspend", help="ad spend pulled from Yandex Direct, VK Ads, Google Ads")
    actions = group.add_subparsers(dest="action", required=True)

    def run(command: Callable[[AsyncSession, argparse.Namespace], Awaitable[list[str]]]) -> Any:
        def handler(settings: Settings, args: argparse.Namespace) -> int:
            for line in run_in_session(settings, lambda s: command(s, args)):
                print(line)
            return 0

        return handler

    p = actions.add_parser("add", help="pull a site's spend from an ad account")
    p.add_argument("site", help="site key or id")
    p.add_argument("platform", choices=tuple(PLATFORMS))
    p.add_argument("--name", required=True)
    p.add_argument(
        "--config-json",
        required=True,
        help="the connector's config (docs/adspend.md) as a JSON object; - reads it from "
        "stdin (keeps tokens out of the shell history)",
    )
    p.add_argument("--interval-minutes", type=int, default=accounts.DEFAULT_INTERVAL_MINUTES)
    p.add_argument(
        "--lookback-days",
        type=int,
        default=accounts.DEFAULT_LOOKBACK_DAYS,
        help="days re-pulled every round",
    )
    p.add_argument("--disabled", action="store_true", help="add it switched off")
    p.set_defaults(func=run(cmd_add))

    p = actions.add_parser("config", help="change an account's config (merged; - reads stdin)")
    p.add_argument("id", type=int)
    p.add_argument("--config-json", required=True)
    p.set_defaults(func=run(cmd_config))

    p = actions.add_parser("list", help="ad accounts and how their sync is going")
    p.add_argument("--site", help="site key or id")
    p.set_defaults(func=run(cmd_list))

    p = actions.add_parser("status", help="an account's status, last error and alert")
    p.add_argument("id", type=int, nargs="?")
    p.set_defaults(func=run(cmd_status))

    p = actions.add_parser("sync", help="pull an account's scheduled window now")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_sync)

    p = actions.add_parser("backfill", help="pull a range of past days, with a progress bar")
    p.add_argument("id", type=int)
    p.add_argument("--from", dest="first", type=_day, required=True)
    p.add_argument("--to", dest="last", type=_day, required=True)
    p.add_argument("--chunk-days", type=int, default=7, help="days per request (default 7)")
    p.set_defaults(func=cmd_backfill)

    p = actions.add_parser("unmapped", help="pulled spend that maps to no labels")
    p.add_argument("site")
    p.add_argument("--from", dest="first", type=_day)
    p.add_argument("--to", dest="last", type=_day)
    p.set_defaults(func=run(cmd_unmapped))

    p = actions.add_parser("map", help="map a platform campaign to utm labels")
    p.add_argument("site")
    p.add_argument("platform", choices=tuple(PLATFORMS))
    p.add_argument("campaign_id")
    p.add_argument("--source", required=True, help="utm_source")
    p.add_argument("--medium", required=True, help="utm_medium")
    p.add_argument("--campaign", default="", help="utm_campaign")
    p.set_defaults(func=run(cmd_map))

    p = actions.add_parser(
        "rates", help="import currency rates from a CSV (date,currency,rate,base)"
    )
    p.add_argument("file", type=Path, help="CSV file; - reads stdin")
    p.set_defaults(func=run(cmd_rates))


async def cmd_add(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    site = await sites.get_site(session, args.site)
    account = await accounts.create_account(
        session,
        site_id=site.id,
        platform=args.platform,
        name=args.name,
        config=read_config(args.config_json),
        enabled=not args.disabled,
        interval_minutes=args.interval_minutes,
        lookback_days=args.lookback_days,
    )
    view = accounts.public_view(account)
    return [
        f"ad account {account.id} {PLATFORMS[account.platform].title} {account.name!r} for site "
        f"{site.key}: every {account.interval_minutes} min, re-pulling {account.lookback_days} "
        f"day(s), {'enabled' if account.enabled else 'disabled'}",
        f"  secrets set: {', '.join(view.secrets_set) or 'none'}",
        "  a running server pulls it within a minute; `calltracker adspend backfill` for history",
    ]


async def cmd_config(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    account = await accounts.get_account(session, args.id)
    patch = read_config(args.config_json)
    if not isinstance(patch, dict):
        raise Invalid("--config-json must be a JSON object")
    await accounts.update_account(session, account, config_patch=patch)
    return [f"ad account {account.id} saved; it is due now"]


def _status_word(a: AdAccount) -> str:
    if not a.enabled:
        return "disabled"
    return a.error_kind or "ok"


async def cmd_list(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    site_id = (await sites.get_site(session, args.site)).id if args.site else None
    lines = ["id\tsite\tplatform\tname\tstate\tpulled_through\tlast_success"]
    for a in await accounts.list_accounts(session, site_id):
        success = a.last_success_at.strftime("%Y-%m-%d %H:%M") if a.last_success_at else "-"
        through = a.pulled_through.isoformat() if a.pulled_through else "-"
        lines.append(
            f"{a.id}\t{a.site_id}\t{a.platform}\t{a.name}\t{_status_word(a)}\t{through}\t{success}"
        )
    return lines


async def cmd_status(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    rows = (
        [await accounts.get_account(session, args.id)]
        if args.id is not None
        else list(await accounts.list_accounts(session))
    )
    if not rows:
        return ["no ad accounts"]
    lines: list[str] = []
    for a in rows:
        view = accounts.public_view(a)
        status = view.status
        through = status.pulled_through.isoformat() if status.pulled_through else "-"
        success = status.last_success_at.isoformat() if status.last_success_at else "-"
        lines.append(
            f"ad account {a.id} {a.platform} {a.name!r} (site {a.site_id}, {_status_word(a)})"
        )
        lines.append(
            f"  pulled through {through}, last success {success}, "
            f"next round {status.next_sync_at.isoformat()}"
        )
        lines.append(f"  secrets set: {', '.join(view.secrets_set) or 'none'}")
        if a.last_error:
            lines.append(f"  last error ({a.error_kind}, {a.failures} round(s)): {a.last_error}")
        if status.alert:
            lines.append(f"  ! {status.alert}")
    return lines


async def _with_runner(settings: Settings, work: Callable[[SyncRunner], Awaitable[int]]) -> int:
    async with database(settings) as sessionmaker:
        async with aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT}, timeout=aiohttp.ClientTimeout(total=600)
        ) as http:
            return await work(SyncRunner(sessionmaker, http, SyncSettings()))


def _result_line(result: RoundResult) -> str:
    days = f"{result.window.first}..{result.window.last}"
    if result.stored is None:
        return f"{days}: failed ({result.error_kind}): {result.error}"
    s = result.stored
    line = f"{days}: {s.rows} row(s), {money.major(s.cost)} {s.currency}"
    if s.unmapped:
        line += f"; {s.unmapped} unmapped row(s), {money.major(s.unmapped_cost)} {s.currency}"
    return line


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runner: SyncRunner) -> int:
        result = await runner.sync_account(args.id)
        print(f"ad account {args.id}: {_result_line(result)}")
        return 0 if result.ok else 1

    return asyncio.run(_with_runner(settings, work))


class ProgressBar:
    """One self-rewriting line on stderr: a bar, days done of days asked, and the last step."""

    def __init__(self, total: int, out: TextIO | None = None, width: int = 30) -> None:
        self.total = max(1, total)
        self.done = 0
        self.out = out or sys.stderr
        self.width = width
        self.started = time.monotonic()

    def step(self, days: int, note: str) -> None:
        self.done = min(self.total, self.done + days)
        filled = round(self.width * self.done / self.total)
        elapsed = time.monotonic() - self.started
        line = (
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} days "
            f"{100 * self.done // self.total:3d}% {elapsed:5.0f}s  {note}"
        )
        # A terminal rewrites the line; a log file gets one line per step.
        self.out.write(line if self.out.isatty() else line.lstrip("\r") + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.out.isatty():
            self.out.write("\n")
            self.out.flush()


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    if args.last < args.first:
        raise Invalid("--to is before --from")
    if (args.last - args.first).days >= 3 * 366:
        raise Invalid("a backfill covers at most three years (the platforms keep no more)")
    if not 1 <= args.chunk_days <= 31:
        raise Invalid("--chunk-days must be from 1 to 31")
    bar = ProgressBar((args.last - args.first).days + 1)

    async def work(runner: SyncRunner) -> int:
        runner.settings = SyncSettings(backfill_chunk_days=args.chunk_days)

        def progress(window: Window, result: RoundResult) -> None:
            bar.step(len(window.days), _result_line(result))

        results = await runner.backfill(args.id, args.first, args.last, progress=progress)
        bar.close()
        failed = [r for r in results if not r.ok]
        done = sum(len(r.window.days) for r in results if r.ok)
        print(f"ad account {args.id}: {done} day(s) pulled of {bar.total}")
        if failed:
            print(f"stopped: {failed[0].error}; run the same command again to go on")
            return 1
        return 0

    return asyncio.run(_with_runner(settings, work))


async def cmd_unmapped(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    site = await sites.get_site(session, args.site)
    last = args.last or utcnow().date()
    first = args.first or last - timedelta(days=29)
    rows = await store.unmapped(session, site.id, first, last)
    if not rows:
        return [f"all pulled spend of {site.key} from {first} to {last} is mapped"]
    lines = ["account\tplatform\tcampaign_id\tcampaign\tspend\timpressions\tclicks\tdays"]
    for r in rows:
        lines.append(
            f"{r.account_id}\t{r.platform}\t{r.campaign_id}\t{r.campaign_name}\t"
            f"{money.major(r.cost)} {r.currency}\t{r.impressions}\t{r.clicks}\t"
            f"{r.first_day}..{r.last_day}"
        )
    lines.append("map one: calltracker adspend map SITE PLATFORM CAMPAIGN_ID --source --medium")
    return lines


async def cmd_map(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    site = await sites.get_site(session, args.site)
    found, remapped = await store.set_mapping(
        session,
        site_id=site.id,
        platform=args.platform,
        campaign_id=args.campaign_id,
        source=args.source,
        medium=args.medium,
        campaign=args.campaign,
        now=utcnow(),
    )
    return [
        f"{found.platform} campaign {found.campaign_id} -> {found.source}/{found.medium}/"
        f"{found.campaign or '(no campaign)'}; {remapped} stored row(s) re-mapped"
    ]


async def cmd_rates(session: AsyncSession, args: argparse.Namespace) -> list[str]:
    text = sys.stdin.read() if str(args.file) == "-" else args.file.read_text("utf-8-sig")
    try:
        count = await rates.store_rates(session, rates.parse_csv(text), "import")
    except BadRows as err:
        raise Invalid(
            err.message + "".join(f"\n  line {e.line}: {e.reason}" for e in err.errors[5:20])
        ) from None
    return [f"{count} rate(s) stored"]

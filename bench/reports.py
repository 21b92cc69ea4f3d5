"""Report query time on a big database: seeds 1M calls and 5M visits, then times reports.

    python bench/reports.py [--mode sqlite|pg|both] [--calls 1000000] [--visits 5000000]
                            [--days 365] [--reuse] [--sqlite-path /tmp/ct-bench-reports.db]

Seeding is a bulk load (PostgreSQL: COPY via asyncpg copy_records_to_table; SQLite:
executemany in large transactions) and takes minutes; --reuse keeps an already seeded
database. Then the real report code (calltracker.reports.query.run_report) runs several
reports, each a few times; the figures printed are the best and the median of those runs.
Targets: the default report (last 30 days by source, with its by-day trend) under 1 s on
PostgreSQL and under 3 s on SQLite. Each report is timed twice: counted from every visit, and
with the finished days rolled up as a running server keeps them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import Boolean, Column, Integer
from sqlalchemy.types import JSON

from calltracker.db.base import Base
from calltracker.db.engine import create_engine, create_sessionmaker
from calltracker.db.migrate import upgrade
from calltracker.db.models import Site
from calltracker.reports import visit_rollup
from calltracker.reports.query import ReportParams, run_report

PG_ADMIN = os.environ.get(
    "CALLTRACKER_TEST_PG_URL", "postgresql://postgres:postgres@127.0.0.1:5432/test"
)
PG_DB = "ct_bench_reports"
TZ = ZoneInfo("Europe/Moscow")
CHUNK = 50_000
SOURCES = [
    ("yandex", "cpc", 0.35),
    ("google", "cpc", 0.2),
    ("google", "organic", 0.15),
    ("yandex", "organic", 0.1),
    ("vk", "social", 0.08),
    ("(direct)", "(none)", 0.12),
]
CAMPAIGNS = 20  # per paid source: campaign names c0..c19
KEYWORDS = 50  # per campaign
STATUSES = ["answered"] * 80 + ["missed"] * 12 + ["busy"] * 5 + ["failed"] * 3


def label(rng: random.Random) -> tuple[str, str, str, str]:
    r = rng.random()
    source, medium = SOURCES[-1][:2]
    for candidate, candidate_medium, share in SOURCES:
        if r < share:
            source, medium = candidate, candidate_medium
            break
        r -= share
    if medium in ("cpc", "social"):
        campaign = f"{source}-c{rng.randrange(CAMPAIGNS)}"
        return source, medium, campaign, f"kw{rng.randrange(KEYWORDS)}"
    return source, medium, "", ""


def moments(rng: random.Random, first: date, days: int, total: int) -> Iterator[int]:
    """`total` epoch seconds spread over the days, in time order, as rows arrive in life."""
    per_day = total // days
    extra = total - per_day * days
    for n in range(days):
        start = int(
            datetime.combine(first + timedelta(days=n), datetime.min.time(), TZ).timestamp()
        )
        count = per_day + (1 if n < extra else 0)
        yield from sorted(start + rng.randrange(86_400) for _ in range(count))


class Rows:
    """Full rows for one table and one database, from only the values that vary per row.

    The row template (neutral values per column type) is built once; per row only the varying
    columns are set, in the database's own representation: this is what keeps seeding millions
    of rows to a few microseconds each.
    """

    def __init__(self, table: str, dialect: str, varying: Sequence[str]) -> None:
        self.table = table
        self.sqlite = dialect == "sqlite"
        columns = list(Base.metadata.tables[table].columns)
        if not self.sqlite:  # serial keys come from their sequences, unless given
            columns = [c for c in columns if not c.primary_key or c.name in varying]
        self.columns = [c.name for c in columns]
        now = datetime.now(UTC)
        self.template = [self.neutral(c, now) for c in columns]
        self.positions = [self.columns.index(name) for name in varying]

    def neutral(self, column: Column[Any], now: datetime) -> Any:
        if column.nullable or column.primary_key:  # a NULL key: SQLite numbers the row
            return None
        if isinstance(column.type, Boolean):
            return 0 if self.sqlite else False
        if isinstance(column.type, Integer):
            return 0
        if isinstance(column.type, JSON):
            return "{}"
        if column.name.endswith("_at"):
            return self.at(int(now.timestamp()))
        return ""

    def at(self, epoch: int) -> Any:
        # SQLite holds what SQLAlchemy stores there: naive UTC text with microseconds.
        if self.sqlite:
            t = time.gmtime(epoch)
            return (
                f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} "
                f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.000000"
            )
        return datetime.fromtimestamp(epoch, UTC)

    def flag(self, value: bool) -> Any:
        return int(value) if self.sqlite else value

    def day(self, value: date) -> Any:
        return value.isoformat() if self.sqlite else value

    def row(self, values: Sequence[Any]) -> tuple[Any, ...]:
        row = self.template.copy()
        for position, value in zip(self.positions, values, strict=True):
            row[position] = value
        return tuple(row)


VISIT_VARYING = (
    "id", "site_id", "visitor_key", "started_at", "url", "source", "medium", "campaign",
    "keyword", "touch_source", "touch_medium", "number", "number_kind", "is_bot",
)  # fmt: skip


def visit_rows(r: Rows, first: date, days: int, total: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(1)
    for n, at in enumerate(moments(rng, first, days, total)):
        source, medium, campaign, keyword = label(rng)
        yield r.row(
            (
                f"bv{n:09d}", 1, f"vk{rng.randrange(total)}", r.at(at), "https://bench.example/",
                source, medium, campaign, keyword, source, medium, "+74951000001", "pool",
                r.flag(rng.random() < 0.03),
            )
        )  # fmt: skip


CALL_VARYING = (
    "id", "linkedid", "site_id", "tracking_number", "caller", "started_at", "status", "source",
    "medium", "campaign", "keyword", "attribution", "unique", "target",
)  # fmt: skip


def call_rows(
    r: Rows, first: date, days: int, total: int, deals: list[tuple[int, int]]
) -> Iterator[tuple[Any, ...]]:
    """Calls in time order; every 20th call or so won a deal, noted in `deals` (id, start)."""
    rng = random.Random(2)
    for n, at in enumerate(moments(rng, first, days, total)):
        source, medium, campaign, keyword = label(rng)
        status = rng.choice(STATUSES)
        if rng.random() < 0.05:
            deals.append((n + 1, at))
        yield r.row(
            (
                n + 1, f"bc{n}", 1, "+74951000001", f"+7916{rng.randrange(10**7):07d}", r.at(at),
                status, source, medium, campaign, keyword, "exact", r.flag(rng.random() < 0.7),
                r.flag(status == "answered" and rng.random() < 0.6),
            )
        )  # fmt: skip


SPEND_VARYING = (
    "site_id",
    "spend_date",
    "source",
    "medium",
    "campaign",
    "keyword",
    "amount",
    "currency",
)


def spend_rows(r: Rows, first: date, days: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(3)
    for n in range(days):
        day = r.day(first + timedelta(days=n))
        for source, medium, _ in SOURCES:
            if medium not in ("cpc", "social"):
                continue
            for c in range(CAMPAIGNS):
                for k in range(0, KEYWORDS, 5):  # spend on every fifth keyword
                    yield r.row(
                        (1, day, source, medium, f"{source}-c{c}", f"kw{k}",
                         rng.randrange(100, 100_000), "RUB")
                    )  # fmt: skip


CONVERSION_VARYING = ("site_id", "external_id", "call_id", "call_started_at", "amount", "currency")


def conversion_rows(r: Rows, deals: list[tuple[int, int]]) -> Iterator[tuple[Any, ...]]:
    # A generator: `deals` is read only once the calls before it have been written.
    rng = random.Random(4)
    for n, (call_id, at) in enumerate(deals):
        yield r.row((1, f"deal-{n}", call_id, r.at(at), rng.randrange(100_000, 10_000_000), "RUB"))


def chunks(rows: Iterator[tuple[Any, ...]], size: int = CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def all_tables(
    args: argparse.Namespace, first: date, dialect: str
) -> list[tuple[Rows, Iterator[tuple[Any, ...]]]]:
    visit = Rows("visit", dialect, VISIT_VARYING)
    call = Rows("call", dialect, CALL_VARYING)
    spend = Rows("ad_spend", dialect, SPEND_VARYING)
    conversion = Rows("conversion", dialect, CONVERSION_VARYING)
    deals: list[tuple[int, int]] = []
    return [
        (visit, visit_rows(visit, first, args.days, args.visits)),
        (call, call_rows(call, first, args.days, args.calls, deals)),
        (spend, spend_rows(spend, first, args.days)),
        (conversion, conversion_rows(conversion, deals)),
    ]


# --- SQLite -----------------------------------------------------------------------------------


def seed_sqlite(path: Path, args: argparse.Namespace, first: date) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")  # a bench load: durability does not matter
    conn.execute("PRAGMA cache_size=-1000000")
    site_row(conn)
    for maker, rows in all_tables(args, first, "sqlite"):
        started = time.perf_counter()
        name = maker.table
        quoted = ", ".join(f'"{c}"' for c in maker.columns)
        sql = f'INSERT INTO "{name}" ({quoted}) VALUES ({", ".join("?" * len(maker.columns))})'
        count = 0
        for batch in chunks(rows, 200_000):
            with conn:
                conn.executemany(sql, batch)
            count += len(batch)
        print(f"  sqlite: {name:<10} {count:>9,} rows in {time.perf_counter() - started:6.1f} s")
    started = time.perf_counter()
    conn.execute("ANALYZE")
    conn.close()
    print(f"  sqlite: ANALYZE in {time.perf_counter() - started:.1f} s")


def site_row(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO site (id, key, name, domains, country, timezone, default_number, "
        "pooled_mediums, selectors, target_min_talk_seconds, unique_window_days, "
        "callerid_template, created_at) VALUES (1, 'bench', 'Bench', '[]', 'RU', "
        "'Europe/Moscow', '+74950000000', '[]', '[]', 30, 30, '', '2026-01-01 00:00:00.000000')"
    )
    conn.execute(
        "INSERT INTO report_currency (site_id, currency, set_at) VALUES (1, 'RUB', '2026-01-01 00:00:00.000000')"
    )
    conn.commit()


# --- PostgreSQL -------------------------------------------------------------------------------


async def seed_pg(url: str, args: argparse.Namespace, first: date) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO site (id, key, name, domains, country, timezone, default_number, "
            "pooled_mediums, selectors, target_min_talk_seconds, unique_window_days, "
            "callerid_template, created_at) VALUES (1, 'bench', 'Bench', '[]', 'RU', "
            "'Europe/Moscow', '+74950000000', '[]', '[]', 30, 30, '', now())"
        )
        await conn.execute("INSERT INTO report_currency VALUES (1, 'RUB', now())")
        for maker, rows in all_tables(args, first, "postgresql"):
            started = time.perf_counter()
            count = 0
            for batch in chunks(rows):
                await conn.copy_records_to_table(maker.table, records=batch, columns=maker.columns)
                count += len(batch)
            print(
                f"  pg:     {maker.table:<10} {count:>9,} rows in {time.perf_counter() - started:6.1f} s"
            )
        await conn.execute("SELECT setval('call_id_seq', (SELECT max(id) FROM call))")
        started = time.perf_counter()
        # VACUUM sets the visibility map, which index-only scans need; ANALYZE the statistics.
        await conn.execute("VACUUM ANALYZE")
        print(f"  pg:     VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
    finally:
        await conn.close()


async def pg_database(reuse: bool) -> tuple[str, bool]:
    """The bench database's URL, and whether it still needs seeding."""
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB)
        if exists and reuse:
            return PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB, False
        await admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {PG_DB}")
    finally:
        await admin.close()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DB, True


# --- timing -----------------------------------------------------------------------------------


async def time_reports(name: str, url: str, last: date, runs: int) -> None:
    """Each case counted from every visit, then again once the finished days are rolled up
    (what a running server keeps: reports/visit_rollup.py)."""
    await upgrade(url)  # a --reuse database may predate the rollup tables
    engine = create_engine(url)
    maker = create_sessionmaker(engine)
    cases = [
        ("last 30 days by source (default)", ReportParams(last - timedelta(days=29), last)),
        (
            "last 30 days by keyword, yandex/cpc",
            ReportParams(
                last - timedelta(days=29), last, "keyword", {"source": "yandex", "medium": "cpc"}
            ),
        ),
        ("last 90 days by campaign", ReportParams(last - timedelta(days=89), last, "campaign")),
        ("365 days by source", ReportParams(last - timedelta(days=364), last)),
    ]
    try:
        async with maker.begin() as session:
            await visit_rollup.forget_site(session, 1)
        await time_cases(name, "counted", maker, cases, runs)
        started = time.perf_counter()
        async with maker() as session:
            site = await session.get(Site, 1)
            assert site is not None
        rolled = await visit_rollup.roll_up_site(maker, 1, site.timezone, datetime.now(UTC))
        print(
            f"  {name:<6} rolled up {rolled} finished days in {time.perf_counter() - started:.1f} s"
        )
        await time_cases(name, "rolled up", maker, cases, runs)
    finally:
        await engine.dispose()


async def analyze(url: str) -> None:
    if url.startswith("postgresql"):
        # VACUUM sets the visibility map the index-only scans need, as after seeding.
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("VACUUM ANALYZE visit_day")
        finally:
            await conn.close()
    else:
        await asyncio.to_thread(_sqlite_analyze, url.removeprefix("sqlite:///"))


def _sqlite_analyze(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE visit_day")


async def time_cases(
    name: str, kind: str, maker: Any, cases: list[tuple[str, ReportParams]], runs: int
) -> None:
    for title, params in cases:
        times = []
        for _ in range(runs):
            async with maker() as session:
                site = await session.get(Site, 1)
                assert site is not None
                started = time.perf_counter()
                report = await run_report(session, site, params)
                times.append(time.perf_counter() - started)
        print(
            f"  {name:<6} {kind:<9} {title:<36} best {min(times):6.3f} s  median "
            f"{statistics.median(times):6.3f} s  ({len(report.rows)} rows, "
            f"{report.totals.calls:,} calls, {report.totals.visits:,} visits)"
        )


async def main(args: argparse.Namespace) -> None:
    last = datetime.now(TZ).date()
    first = last - timedelta(days=args.days - 1)
    print(
        f"seeding {args.visits:,} visits and {args.calls:,} calls over {args.days} days "
        f"({first} .. {last}), one site in Europe/Moscow"
    )
    if args.mode in ("sqlite", "both"):
        path = Path(args.sqlite_path)
        url = f"sqlite:///{path}"
        if not (args.reuse and path.exists()):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            await upgrade(url)
            started = time.perf_counter()
            await asyncio.to_thread(seed_sqlite, path, args, first)
            print(f"  sqlite: seeded in {time.perf_counter() - started:.0f} s")
        await time_reports("sqlite", url, last, args.runs)
    if args.mode in ("pg", "both"):
        url, fresh = await pg_database(args.reuse)
        if fresh:
            await upgrade(url)
            started = time.perf_counter()
            await seed_pg(url, args, first)
            print(f"  pg:     seeded in {time.perf_counter() - started:.0f} s")
        await time_reports("pg", url, last, args.runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["sqlite", "pg", "both"], default="both")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    parser.add_argument("--sqlite-path", default="/tmp/ct-bench-reports.db")
    asyncio.run(main(parser.parse_args()))

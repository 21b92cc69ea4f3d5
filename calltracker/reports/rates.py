"""Currency rates the admin keeps (or imports): what converts spend in another currency.

A rate says one unit of `currency` is worth `rate` units of `base` on a day. Spend of day D in
currency C reports in the site's currency S at the C->S rate of day D, or else of the latest
earlier day at most MAX_AGE_DAYS before (a central bank publishes no rates on weekends and
holidays); the report names the rate and its day. Without such a rate the spend is left out of
the money figures and flagged: a guessed rate would show a guess as certain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.clock import utcnow
from calltracker.db.report_models import CurrencyRate
from calltracker.db.upsert import insert_for
from calltracker.reports import money
from calltracker.reports.rows import Batch, Records, RowError, csv_records, json_records
from calltracker.reports.spend import parse_date

MAX_AGE_DAYS = 7
SCALE = 10**8  # rate_e8: eight implied decimals
MAX_RATE = Decimal("1e9")
REQUIRED = ("date", "currency", "rate", "base")
OPTIONAL = ("source",)


@dataclass(frozen=True)
class RateRow:
    line: int
    day: date
    currency: str
    base: str
    rate_e8: int
    source: str


@dataclass(frozen=True)
class Rate:
    day: date
    currency: str
    base: str
    rate_e8: int
    source: str

    @property
    def rate(self) -> Decimal:
        return Decimal(self.rate_e8) / SCALE


def parse_rate(raw: object) -> int:
    """rate_e8 from '92.4567', '92,4567' or a number; ValueError says what is wrong."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise ValueError("rate must be a number")
    text = str(raw).strip().replace(" ", "").replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"rate {raw!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"rate {raw!r} must be a positive number")
    if value >= MAX_RATE:
        raise ValueError(f"rate {raw!r} is too large")
    scaled = value * SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"rate {raw!r} has more than eight decimals")
    return int(scaled)


def parse_record(record: Mapping[str, Any], line: int) -> RateRow:
    currency = money.parse_currency(record.get("currency"))
    base = money.parse_currency(record.get("base"))
    if currency == base:
        raise ValueError(f"currency and base are both {currency}")
    source = str(record.get("source") or "").strip()
    if len(source) > 64:
        raise ValueError("source is longer than 64 characters")
    return RateRow(
        line, parse_date(record.get("date")), currency, base, parse_rate(record.get("rate")), source
    )


def _collect(records: Records) -> Batch[RateRow]:
    batch: Batch[RateRow] = Batch()
    for line, record in records:
        if isinstance(record, str):
            batch.errors.append(RowError(line, record))
            continue
        try:
            batch.items.append(parse_record(record, line))
        except ValueError as err:
            batch.errors.append(RowError(line, str(err)))
    return batch


def parse_csv(text: str) -> Batch[RateRow]:
    """CSV `date,currency,rate,base[,source]`: 1 currency = rate base on that date."""
    return _collect(csv_records(text, REQUIRED, REQUIRED + OPTIONAL))


def parse_json_rows(rows: object) -> Batch[RateRow]:
    return _collect(json_records(rows, "rate"))


async def store_rates(session: AsyncSession, batch: Batch[RateRow], default_source: str) -> int:
    """Insert or replace each (base, currency, day) rate, all or nothing; the count stored."""
    batch.check()
    now = utcnow()
    latest: dict[tuple[str, str, date], RateRow] = {}
    for row in batch.items:  # a later line wins over an earlier one for the same day
        latest[(row.base, row.currency, row.day)] = row
    values = [
        {
            "day": r.day,
            "currency": r.currency,
            "base": r.base,
            "rate_e8": r.rate_e8,
            "source": r.source or default_source,
            "updated_at": now,
        }
        for r in latest.values()
    ]
    insert = insert_for(session)
    for start in range(0, len(values), 1000):
        stmt = insert(CurrencyRate).values(values[start : start + 1000])
        stmt = stmt.on_conflict_do_update(
            index_elements=["base", "currency", "day"],
            set_={
                "rate_e8": stmt.excluded.rate_e8,
                "source": stmt.excluded.source,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await session.execute(stmt)
    return len(values)


async def list_rates(
    session: AsyncSession,
    *,
    currency: str | None = None,
    first: date | None = None,
    last: date | None = None,
    limit: int = 1000,
) -> list[Rate]:
    query = select(CurrencyRate).order_by(
        CurrencyRate.day.desc(), CurrencyRate.currency, CurrencyRate.base
    )
    if currency:
        query = query.where(CurrencyRate.currency == currency)
    if first:
        query = query.where(CurrencyRate.day >= first)
    if last:
        query = query.where(CurrencyRate.day <= last)
    rows = (await session.scalars(query.limit(limit))).all()
    return [Rate(r.day, r.currency, r.base, r.rate_e8, r.source) for r in rows]


async def load_rates(
    session: AsyncSession, currencies: Iterable[str], base: str, first: date, last: date
) -> list[Rate]:
    """Every rate a conversion of days first..last into `base` may use."""
    wanted = sorted(set(currencies))
    if not wanted:
        return []
    query = select(CurrencyRate).where(
        CurrencyRate.base == base,
        CurrencyRate.currency.in_(wanted),
        CurrencyRate.day >= first - timedelta(days=MAX_AGE_DAYS),
        CurrencyRate.day <= last,
    )
    rows = (await session.scalars(query)).all()
    return [Rate(r.day, r.currency, r.base, r.rate_e8, r.source) for r in rows]


class RateBook:
    """Pure lookups over loaded rates: which rate converts a currency on a day."""

    def __init__(self, rates: Sequence[Rate]) -> None:
        self._by_currency: dict[str, list[Rate]] = {}
        for rate in sorted(rates, key=lambda r: r.day):
            self._by_currency.setdefault(rate.currency, []).append(rate)

    def rate_for(self, currency: str, day: date) -> Rate | None:
        """The day's rate, or the latest earlier one at most MAX_AGE_DAYS old."""
        best = None
        for rate in self._by_currency.get(currency, []):
            if rate.day > day:
                break
            best = rate
        if best is None or (day - best.day).days > MAX_AGE_DAYS:
            return None
        return best


def convert(amount_minor: int, rate: Rate) -> int:
    """Minor units of the base currency, rounded half-up to the kopeck."""
    value = Decimal(amount_minor) * Decimal(rate.rate_e8) / SCALE
    return int(value.quantize(Decimal(1), ROUND_HALF_UP))


def rate_text(value: Decimal) -> str:
    """A rate as people read it: no trailing zeros, at least two decimals."""
    text = f"{value.normalize():f}"
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"

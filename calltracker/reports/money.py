"""Money: amounts in minor units, currency codes, and the one currency each site reports in.

Spend in another currency is kept as it is and converted by the report (reports/rates.py);
deals must come in the site's currency (lock_currency).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.db.report_models import ReportCurrency
from calltracker.errors import Invalid

# Every currency is kept with two decimals (kopecks, cents): enough for RUB, USD, EUR, KZT.
MINOR_PER_MAJOR = 100
MAX_AMOUNT = Decimal("1e12")  # a typo guard, far above any one day's spend or one deal
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_SPACES = str.maketrans("", "", " \u00a0\u202f\t'")


class CurrencyMismatch(Invalid):
    code = "currency_mismatch"


def parse_amount(raw: object) -> int:
    """Minor units from '1234.50', '1 234,50', 1234.5 or 1234; ValueError names the problem."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise ValueError("amount must be a number")
    text = str(raw).translate(_SPACES)
    if "," in text:
        if "." in text:
            raise ValueError(f"amount {raw!r} mixes ',' and '.'; use one decimal separator")
        text = text.replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"amount {raw!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"amount {raw!r} is not a number")
    if value < 0:
        raise ValueError(f"amount {raw!r} is negative")
    if value >= MAX_AMOUNT:
        raise ValueError(f"amount {raw!r} is too large")
    minor = value * MINOR_PER_MAJOR
    if minor != minor.to_integral_value():
        raise ValueError(f"amount {raw!r} has more than two decimals")
    return int(minor)


def parse_currency(raw: object) -> str:
    text = str(raw or "").strip().upper()
    if not CURRENCY_RE.match(text):
        raise ValueError(f"currency {raw!r} is not a three-letter code such as RUB or USD")
    return text


def major(minor: int | Decimal) -> Decimal:
    """Major units rounded half-up to cents: what people see and what JSON carries."""
    return (Decimal(minor) / MINOR_PER_MAJOR).quantize(Decimal("0.01"), ROUND_HALF_UP)


async def site_currency(session: AsyncSession, site_id: int) -> str | None:
    result: str | None = await session.scalar(
        select(ReportCurrency.currency).where(ReportCurrency.site_id == site_id)
    )
    return result


async def ensure_currency(session: AsyncSession, site_id: int, currency: str) -> str:
    """The site's report currency, fixed to `currency` if it has none yet."""
    current = await site_currency(session, site_id)
    if current is None:
        session.add(ReportCurrency(site_id=site_id, currency=currency))
        await session.flush()
        return currency
    return current


async def lock_currency(session: AsyncSession, site_id: int, currency: str) -> str:
    """Fix the site's currency on first use; later amounts in another currency are refused.

    Revenue is not converted: a mismatch is an error the CRM's importer fixes at the source.
    """
    current = await site_currency(session, site_id)
    if current is None:
        session.add(ReportCurrency(site_id=site_id, currency=currency))
        await session.flush()
        return currency
    if current != currency:
        raise CurrencyMismatch(
            f"this site reports in {current}; convert amounts in {currency} before importing"
        )
    return current

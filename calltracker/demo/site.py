"""The demo site: a shop with a pool, two static numbers, sample data and a first login."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from calltracker.accounts import tokens, users
from calltracker.catalog import sites
from calltracker.demo.sample import seed_demo

DEMO_SITE_KEY = "demo"
DEMO_DEFAULT_NUMBER = "+74950000000"
DEMO_POOL = [f"+7495100{i:04d}" for i in range(1, 21)]
DEMO_STATIC = [
    ("+74952000001", "billboard", "outdoor", "tverskaya-2026"),
    ("+74952000002", "radio", "offline", "europa-plus-spring"),
]


async def create_demo(session: AsyncSession, *, sample_data: bool = True) -> list[str]:
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
        pool = await sites.create_pool(session, site)
        await sites.add_pool_numbers(session, pool, DEMO_POOL)
        for number, source, medium, campaign in DEMO_STATIC:
            await sites.add_static_number(
                session, site, number, source=source, medium=medium, campaign=campaign
            )
        lines += [
            f"created demo site: key={site.key} id={site.id} domains=127.0.0.1,localhost",
            f"  default number {DEMO_DEFAULT_NUMBER}",
            f"  pool '{pool.name}' (id {pool.id}): {len(DEMO_POOL)} numbers "
            f"{DEMO_POOL[0]}..{DEMO_POOL[-1]}, hold {pool.hold_seconds // 60} min",
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


async def create_demo_admin(session: AsyncSession) -> str:
    """The console's first login: user `admin` with a random password, printed once."""
    try:
        await users.get_user(session, "admin")
        return "console user 'admin' exists; new password: calltracker user passwd admin"
    except users.UnknownUser:
        password = users.generate_password()
        await users.create_user(session, username="admin", role="admin", password=password)
        return f"console login (shown once): user admin, password {password}"

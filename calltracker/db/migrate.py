"""Run Alembic migrations from code (inside a running event loop) or from the CLI."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from calltracker.db.engine import create_engine
from calltracker.errors import CalltrackerError


class SchemaBehind(CalltrackerError):
    """The database is not at the schema this code needs; `calltracker migrate` brings it."""

    code = "schema_behind"


# Shipped inside the package, so an installed wheel migrates without the source checkout.
SCRIPTS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.attributes["database_url"] = database_url
    return cfg


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`, creating the SQLite file if needed."""
    cfg = alembic_config(database_url)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, cfg, revision)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


async def require_current(engine: AsyncEngine) -> None:
    """Refuse to work on a database whose schema is not this code's (SchemaBehind says how)."""
    # Only `migrate` and `serve` change the schema: a command that happens to run against a
    # new database, or an old backup, must not migrate it as a side effect.
    async with engine.connect() as connection:
        current = frozenset(
            await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_heads()
            )
        )
    scripts = _scripts()
    wanted = frozenset(scripts.get_heads())
    if current == wanted:
        return
    if not current:
        raise SchemaBehind("the database has no calltracker schema yet: run `calltracker migrate`")
    if not current <= {script.revision for script in scripts.walk_revisions()}:
        raise SchemaBehind(
            f"the database schema ({', '.join(sorted(current))}) is newer than this "
            "calltracker: run the calltracker version that migrated it"
        )
    raise SchemaBehind(
        f"the database schema is at {', '.join(sorted(current))}, this calltracker needs "
        f"{', '.join(sorted(wanted))}: run `calltracker migrate` (back the database up first)"
    )

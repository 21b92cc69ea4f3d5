"""Run Alembic migrations from code (inside a running event loop) or from the CLI."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from calltracker.db.engine import create_engine

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

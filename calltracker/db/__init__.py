"""The database: tables, engine and migrations. Importing the package registers every table
on Base.metadata, which Alembic and the tests' schema checks read."""

from calltracker.db import (
    adspend_models,
    auth_models,
    deal_models,
    integration_models,
    models,
    report_models,
)

__all__ = [
    "adspend_models",
    "auth_models",
    "deal_models",
    "integration_models",
    "models",
    "report_models",
]

"""The database: tables, engine and migrations. Importing the package registers every table
on Base.metadata, which Alembic and the tests' schema checks read."""

from calltracker.db import auth_models, deal_models, integration_models, models, report_models

__all__ = ["auth_models", "deal_models", "integration_models", "models", "report_models"]

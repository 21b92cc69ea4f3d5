"""report spend and conversions

Ad spend per day and label, won deals (conversions), each site's report currency, and
covering indexes on visit and call for the report's GROUP BY (calltracker/reports/query.py).

Revision ID: 3f12496b4eaa
Revises: afe78940909a
Create Date: 2026-11-22 10:46:21.125209
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import calltracker.db.base

revision: str = "3f12496b4eaa"
down_revision: str | None = "afe78940909a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ad_spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("spend_date", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("medium", sa.String(length=256), nullable=False),
        sa.Column("campaign", sa.String(length=256), nullable=False),
        sa.Column("keyword", sa.String(length=256), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("imported_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_ad_spend_site_id_site"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_spend")),
        sa.UniqueConstraint(
            "site_id",
            "spend_date",
            "source",
            "medium",
            "campaign",
            "keyword",
            name="uq_ad_spend_key",
        ),
    )
    op.create_table(
        "report_currency",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("set_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site.id"],
            name=op.f("fk_report_currency_site_id_site"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", name=op.f("pk_report_currency")),
    )
    op.create_table(
        "conversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.Column(
            "call_started_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("converted_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["call.id"], name=op.f("fk_conversion_call_id_call"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_conversion_site_id_site"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversion")),
        sa.UniqueConstraint("site_id", "external_id", name="uq_conversion_deal"),
    )
    with op.batch_alter_table("conversion", schema=None) as batch_op:
        batch_op.create_index("ix_conversion_call", ["call_id"], unique=False)
        batch_op.create_index(
            "ix_conversion_site_call_started", ["site_id", "call_started_at"], unique=False
        )

    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.create_index(
            "ix_call_report",
            [
                "site_id",
                "started_at",
                "status",
                "unique",
                "target",
                "source",
                "medium",
                "campaign",
                "keyword",
            ],
            unique=False,
        )

    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_visit_report",
            ["site_id", "started_at", "is_bot", "source", "medium", "campaign", "keyword"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.drop_index("ix_visit_report")

    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index("ix_call_report")

    with op.batch_alter_table("conversion", schema=None) as batch_op:
        batch_op.drop_index("ix_conversion_site_call_started")
        batch_op.drop_index("ix_conversion_call")

    op.drop_table("conversion")
    op.drop_table("report_currency")
    op.drop_table("ad_spend")

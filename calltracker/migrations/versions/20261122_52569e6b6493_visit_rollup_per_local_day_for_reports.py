"""visit rollup per local day for reports

Revision ID: 52569e6b6493
Revises: 906bd804402d
Create Date: 2026-11-22 14:06:24.273232
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import calltracker.db.base

revision: str = "52569e6b6493"
down_revision: str | None = "906bd804402d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "visit_day",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("medium", sa.String(length=256), nullable=False),
        sa.Column("campaign", sa.String(length=256), nullable=False),
        sa.Column("keyword", sa.String(length=256), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_visit_day_site_id_site"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_day")),
    )
    with op.batch_alter_table("visit_day", schema=None) as batch_op:
        batch_op.create_index(
            "ix_visit_day_report",
            ["site_id", "tz", "day", "source", "medium", "campaign", "keyword", "visits"],
            unique=False,
        )

    op.create_table(
        "visit_day_done",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("rolled_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site.id"],
            name=op.f("fk_visit_day_done_site_id_site"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("site_id", "tz", "day", name=op.f("pk_visit_day_done")),
    )


def downgrade() -> None:
    op.drop_table("visit_day_done")
    with op.batch_alter_table("visit_day", schema=None) as batch_op:
        batch_op.drop_index("ix_visit_day_report")
    op.drop_table("visit_day")

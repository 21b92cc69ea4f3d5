"""ad spend from the platforms, impressions, clicks, currency rates

Ad accounts pulled from Yandex Direct, VK Ads and Google Ads (calltracker/adspend/), the
platform rows they pulled and their campaigns, the admin's campaign -> label mapping, a
currency rate table; ad_spend gains impressions, clicks and its origin (0 = import, else the
ad account), which joins the replacement key.

Revision ID: 09c35febbda5
Revises: 52569e6b6493
Create Date: 2026-12-03 12:26:57.993560
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import calltracker.db.base

revision: str = "09c35febbda5"
down_revision: str | None = "52569e6b6493"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "currency_rate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("base", sa.String(length=3), nullable=False),
        sa.Column("rate_e8", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("updated_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_currency_rate")),
        sa.UniqueConstraint("base", "currency", "day", name="uq_currency_rate_day"),
    )
    op.create_table(
        "ad_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("lookback_days", sa.Integer(), nullable=False),
        sa.Column("pulled_through", sa.Date(), nullable=True),
        sa.Column("next_sync_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", calltracker.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_token", sa.String(length=32), nullable=False),
        sa.Column("last_attempt_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("error_kind", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("created_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["site.id"], name=op.f("fk_ad_account_site_id_site"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_account")),
        sa.UniqueConstraint("site_id", "name", name="uq_ad_account_site_name"),
    )
    with op.batch_alter_table("ad_account", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ad_account_site_id"), ["site_id"], unique=False)

    op.create_table(
        "campaign_mapping",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=20), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("medium", sa.String(length=256), nullable=False),
        sa.Column("campaign", sa.String(length=256), nullable=False),
        sa.Column("updated_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site.id"],
            name=op.f("fk_campaign_mapping_site_id_site"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_mapping")),
        sa.UniqueConstraint("site_id", "platform", "campaign_id", name="uq_campaign_mapping_key"),
    )
    op.create_table(
        "ad_campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("ad_group_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("tracking", sa.Text(), nullable=False),
        sa.Column("updated_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ad_account.id"],
            name=op.f("fk_ad_campaign_account_id_ad_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_campaign")),
        sa.UniqueConstraint("account_id", "campaign_id", "ad_group_id", name="uq_ad_campaign_key"),
    )
    op.create_table(
        "platform_spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("spend_date", sa.Date(), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_name", sa.String(length=512), nullable=False),
        sa.Column("ad_group_id", sa.String(length=64), nullable=False),
        sa.Column("ad_group_name", sa.String(length=512), nullable=False),
        sa.Column("keyword_id", sa.String(length=64), nullable=False),
        sa.Column("keyword_text", sa.String(length=512), nullable=False),
        sa.Column("impressions", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("mapped", sa.Boolean(), nullable=False),
        sa.Column("mapped_by", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("medium", sa.String(length=256), nullable=False),
        sa.Column("campaign", sa.String(length=256), nullable=False),
        sa.Column("keyword", sa.String(length=256), nullable=False),
        sa.Column("pulled_at", calltracker.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ad_account.id"],
            name=op.f("fk_platform_spend_account_id_ad_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_spend")),
        sa.UniqueConstraint(
            "account_id",
            "spend_date",
            "campaign_id",
            "ad_group_id",
            "keyword_id",
            name="uq_platform_spend_key",
        ),
    )
    with op.batch_alter_table("platform_spend", schema=None) as batch_op:
        batch_op.create_index(
            "ix_platform_spend_unmapped", ["account_id", "mapped", "spend_date"], unique=False
        )

    with op.batch_alter_table("ad_spend", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("impressions", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("clicks", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("origin", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_ad_spend_key"), type_="unique")
        batch_op.create_unique_constraint(
            "uq_ad_spend_key",
            ["site_id", "origin", "spend_date", "source", "medium", "campaign", "keyword"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_ad_spend_account_id_ad_account"),
            "ad_account",
            ["account_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("ad_spend", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_ad_spend_account_id_ad_account"), type_="foreignkey"
        )
        batch_op.drop_constraint("uq_ad_spend_key", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_ad_spend_key"),
            ["site_id", "spend_date", "source", "medium", "campaign", "keyword"],
        )
        batch_op.drop_column("account_id")
        batch_op.drop_column("origin")
        batch_op.drop_column("clicks")
        batch_op.drop_column("impressions")

    with op.batch_alter_table("platform_spend", schema=None) as batch_op:
        batch_op.drop_index("ix_platform_spend_unmapped")

    op.drop_table("platform_spend")
    op.drop_table("ad_campaign")
    op.drop_table("campaign_mapping")
    with op.batch_alter_table("ad_account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ad_account_site_id"))

    op.drop_table("ad_account")
    op.drop_table("currency_rate")

"""drop visit and call indexes the report indexes cover

Revision ID: 906bd804402d
Revises: 8db4f1669e4e
Create Date: 2026-11-22 12:27:39.065385
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "906bd804402d"
down_revision: str | None = "8db4f1669e4e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_site_started"))

    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_number_started"))
        batch_op.drop_index(batch_op.f("ix_visit_site_started"))
        batch_op.drop_index(batch_op.f("ix_visit_visitor_key"))


def downgrade() -> None:

    with op.batch_alter_table("visit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_visitor_key"), ["visitor_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_visit_site_started"), ["site_id", "started_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_visit_number_started"), ["number", "started_at"], unique=False
        )

    with op.batch_alter_table("call", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_site_started"), ["site_id", "started_at"], unique=False
        )

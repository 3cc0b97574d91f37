"""admin login throttling and session revocation

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 03:00:00.000000

``admin_login_failures`` holds recent failed admin logins (per account key and per address)
so that the 5-in-15-minutes lock holds across processes; ``admin_users.sessions_revoked_at``
lets a logout end the admin's cookie sessions issued before it. The never-used per-account
counters ``admin_users.failed_logins`` and ``locked_until`` go: the failures table is the one
place for the rule.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("account_key", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_login_failures")),
    )
    with op.batch_alter_table("admin_login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_admin_login_failures_account_at", ["account_key", "at"], unique=False)
        batch_op.create_index("ix_admin_login_failures_ip_at", ["ip", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_admin_login_failures_at"), ["at"], unique=False)
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sessions_revoked_at", core.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.drop_column("failed_logins")
        batch_op.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("admin_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locked_until", core.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_column("sessions_revoked_at")
    with op.batch_alter_table("admin_login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_login_failures_at"))
        batch_op.drop_index("ix_admin_login_failures_ip_at")
        batch_op.drop_index("ix_admin_login_failures_account_at")
    op.drop_table("admin_login_failures")

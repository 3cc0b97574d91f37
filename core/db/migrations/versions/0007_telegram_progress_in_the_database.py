"""the Telegram progress-message and retry-offer map, kept in the database

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-04 07:10:00.000000

With web and worker processes (``serve --role``), the process that sent a chat's payment-progress
message is not always the one that learns of the result, and a restarted worker must still edit
the original message: the map (attempt → chat, message) moves from memory to this table, with a
lease so that one worker follows each message.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.db.types import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telegram_progress",
        sa.Column("attempt_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("base_text", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("lang", sa.String(length=8), server_default="en", nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_telegram_progress")),
    )
    op.create_index(
        "ix_telegram_progress_phase_lease", "telegram_progress", ["phase", "lease_until"], unique=False
    )
    op.create_index(
        op.f("ix_telegram_progress_booking_id"), "telegram_progress", ["booking_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_telegram_progress_booking_id"), table_name="telegram_progress")
    op.drop_index("ix_telegram_progress_phase_lease", table_name="telegram_progress")
    op.drop_table("telegram_progress")

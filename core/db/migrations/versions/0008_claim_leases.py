"""claim leases: who holds an outbox row, a reminder or a payment attempt, and until when

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-04 07:00:00.000000

Several worker processes may run the outbox dispatcher, the reminder pass and the payment
watchdog against one database (core.db.claims). ``claimed_by`` names the worker holding a
row's lease, so a worker whose lease ran out and was taken over cannot finish (or renew) the
row as if it were still its own. ``payment_attempts`` gets its lease (``claimed_until``) so
two watchdogs never query or re-push the same attempt at the same time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN on both databases (SQLite >= 3.35): a batch "move and copy" would
# rebuild payment_attempts and lose its expression indexes (0005), which SQLite cannot reflect.
COLUMNS = (
    ("outbox", "claimed_by"),
    ("reminders", "claimed_by"),
    ("payment_attempts", "claimed_until"),
    ("payment_attempts", "claimed_by"),
)


def upgrade() -> None:
    for table, column in COLUMNS:
        if column == "claimed_by":
            op.add_column(table, sa.Column("claimed_by", sa.String(length=64), nullable=True))
        else:
            op.add_column(table, sa.Column(column, core.db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")

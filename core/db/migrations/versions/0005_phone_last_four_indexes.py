"""expression indexes on the last four digits of a payment attempt's phones

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 04:30:00.000000

The admin search by the last 4-8 digits of a phone cannot seek a B-tree index on the whole
number (a suffix is not a prefix), so it scanned the phone indexes: 200-450 ms with 100 000
attempts. These index ``substr(phone, length(phone) - 3, 4)``, an expression SQLite and
PostgreSQL both accept with the same meaning; the search seeks the last four digits and
compares the longer suffix on the few rows found.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_payment_attempts_phone_last4": "phone",
    "ix_payment_attempts_paid_phone_last4": "paid_phone",
}


def upgrade() -> None:
    for name, column in INDEXES.items():
        op.create_index(
            name, "payment_attempts", [sa.text(f"substr({column}, length({column}) - 3, 4)")], unique=False
        )


def downgrade() -> None:
    for name in reversed(INDEXES):
        op.drop_index(name, table_name="payment_attempts")

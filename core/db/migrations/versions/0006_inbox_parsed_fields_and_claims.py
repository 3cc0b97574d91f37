"""the callback inbox keeps the parsed STK fields and a settlement claim (lease)

Revision ID: 0006
Revises: 0008
Create Date: 2026-12-04 07:00:00.000000

The intake parses every STK callback before it stores it; settlement parsed the raw body a
second time. These columns keep what was parsed (CheckoutRequestID, result code and description, whole amount,
receipt, phone, transaction time) next to ``raw_body``; rows stored before this migration
have them NULL and are parsed as before. ``claimed_by`` / ``claimed_until`` let several
settlement workers share one inbox: a worker claims rows for a lease, and a row whose worker
died is claimable again once the lease has lapsed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.db.types import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("checkout_request_id", lambda: sa.String(length=100)),
    ("result_code", lambda: sa.String(length=64)),
    ("result_desc", sa.Text),
    ("amount", sa.BigInteger),
    ("receipt", sa.Text),
    ("phone", sa.Text),
    ("transaction_time", UTCDateTime),
    ("claimed_by", lambda: sa.String(length=40)),
    ("claimed_until", UTCDateTime),
)


def upgrade() -> None:
    with op.batch_alter_table("callback_inbox") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("callback_inbox") as batch:
        for name, _kind in reversed(COLUMNS):
            batch.drop_column(name)

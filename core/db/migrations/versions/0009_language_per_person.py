"""the language each client and practitioner is written to in

Revision ID: 0009
Revises: 0011
Create Date: 2026-12-04 07:00:00.000000

``clients.language`` and ``therapists.language``: "en" or "sw" (core/i18n.py), NULL until
the person's first conversation sets it (Telegram's language_code, else DEFAULT_LANGUAGE) or
they choose with /language, LUGHA or LANGUAGE. Every message to them (chat, outbox
notifications, reminders, e-mail) is rendered in it. Nullable columns: no rewrite of the
tables on either database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
# After 0011: merged after 0010 (reschedules) and 0011 (time off) were on main, so a
# database already at 0011 still gets this one (an id below its parent is only a name).
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("clients", "therapists")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("language", sa.String(length=5), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("language")

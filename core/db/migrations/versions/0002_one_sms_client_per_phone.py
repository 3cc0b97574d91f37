"""one SMS client per phone number

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:05:00.000000

Two first messages from a new number arriving at once (two instances, or two concurrent
inbound SMS) could each create a ``clients`` row for that number. A partial unique index on
``phone`` among clients without Telegram makes the second insert fail, and
``find_or_create_client`` then returns the winner.

A database that already holds such duplicates is not de-duplicated here: merging two
clients moves bookings, payments and health-related history between people, which needs a
human decision. The upgrade stops instead, names the client ids (never the numbers) and
changes nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import SQLAlchemyError

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SMS_CLIENT_SQL = "telegram_user_id IS NULL"
GROUPS_SHOWN = 3  # numbers whose client ids the message lists


class DuplicateSmsClients(SQLAlchemyError):
    """Clients without Telegram share a phone number; an admin must decide which one stays.

    A SQLAlchemyError, so ``smiling-steps db upgrade`` reports it as its one line and exit 1;
    the line names client ids, never phone numbers, last (the CLI cuts lines at 200 characters).
    """

    def __init__(self, groups: list[list[int]]) -> None:
        self.groups = groups
        shown = "; ".join(", ".join(map(str, ids)) for ids in groups[:GROUPS_SHOWN])
        more = f"; {len(groups) - GROUPS_SHOWN} more numbers" if len(groups) > GROUPS_SHOWN else ""
        super().__init__(
            "cannot upgrade: SMS clients share a phone number; keep one client per number "
            "(`smiling-steps clients forget --id N` for an unused one), then upgrade again. "
            f"Client ids by number: {shown}{more}"
        )


def _duplicate_groups() -> list[list[int]]:
    """Ids of SMS clients (no Telegram id) that share a phone number, grouped by number."""
    rows = op.get_bind().execute(
        sa.text(
            "SELECT id, phone FROM clients WHERE telegram_user_id IS NULL AND phone IN ("
            "  SELECT phone FROM clients WHERE telegram_user_id IS NULL AND phone IS NOT NULL"
            "  GROUP BY phone HAVING COUNT(*) > 1"
            ") ORDER BY phone, id"
        )
    )
    groups: dict[str, list[int]] = {}
    for client_id, phone in rows:
        groups.setdefault(phone, []).append(client_id)
    return sorted(groups.values())


def upgrade() -> None:
    groups = _duplicate_groups()
    if groups:
        raise DuplicateSmsClients(groups)
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.create_index(
            "uq_clients_sms_phone",
            ["phone"],
            unique=True,
            sqlite_where=sa.text(SMS_CLIENT_SQL),
            postgresql_where=sa.text(SMS_CLIENT_SQL),
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_clients_sms_phone",
            sqlite_where=sa.text(SMS_CLIENT_SQL),
            postgresql_where=sa.text(SMS_CLIENT_SQL),
        )

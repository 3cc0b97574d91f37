"""indexes behind the admin transaction list and detail

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 03:20:00.000000

The transaction list filters by environment (default: the active one, Property 81) and
optionally by status, newest first; a search by the last digits of a phone scans the phone
indexes (small) instead of the table; the practitioner filter counts through
(booking_id, environment); the detail page reads one attempt's and one booking's
audit entries. With 100 000 attempts these would otherwise be full table scans.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payment_attempts_environment_created_at", ["environment", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_payment_attempts_environment_status_created_at",
            ["environment", "status", "created_at"],
            unique=False,
        )
        batch_op.create_index("ix_payment_attempts_phone", ["phone"], unique=False)
        batch_op.create_index("ix_payment_attempts_paid_phone", ["paid_phone"], unique=False)
        batch_op.create_index(
            "ix_payment_attempts_booking_id_environment", ["booking_id", "environment"], unique=False
        )
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.create_index("ix_audit_entries_subject", ["subject_type", "subject_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entries_subject")
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_attempts_booking_id_environment")
        batch_op.drop_index("ix_payment_attempts_paid_phone")
        batch_op.drop_index("ix_payment_attempts_phone")
        batch_op.drop_index("ix_payment_attempts_environment_status_created_at")
        batch_op.drop_index("ix_payment_attempts_environment_created_at")

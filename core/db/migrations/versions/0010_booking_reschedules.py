"""booking reschedules: the history of moves and the slots held while a move awaits approval

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-04 07:00:00.000000

A booking keeps its row when it moves; ``booking_reschedules`` records each move (APPLIED:
the .ics SEQUENCE counts them) and, with RESCHEDULE_NEEDS_APPROVAL, the requested start a
PENDING row holds until the practitioner decides. Partial unique indexes: one pending hold
per practitioner slot, one pending request per booking.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.db.types import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_SQL = "status = 'PENDING'"


def upgrade() -> None:
    op.create_table(
        "booking_reschedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("old_starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("new_starts_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("new_ends_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("requested_by", sa.String(length=60), nullable=False),
        sa.Column("code", sa.String(length=8), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_booking_reschedules_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["therapist_id"], ["therapists.id"], name=op.f("fk_booking_reschedules_therapist_id_therapists")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_reschedules")),
        sa.UniqueConstraint("code", name=op.f("uq_booking_reschedules_code")),
    )
    op.create_index(
        op.f("ix_booking_reschedules_booking_id"), "booking_reschedules", ["booking_id"], unique=False
    )
    op.create_index(
        "uq_booking_reschedules_pending_slot",
        "booking_reschedules",
        ["therapist_id", "new_starts_at"],
        unique=True,
        sqlite_where=sa.text(PENDING_SQL),
        postgresql_where=sa.text(PENDING_SQL),
    )
    op.create_index(
        "uq_booking_reschedules_pending_booking",
        "booking_reschedules",
        ["booking_id"],
        unique=True,
        sqlite_where=sa.text(PENDING_SQL),
        postgresql_where=sa.text(PENDING_SQL),
    )


def downgrade() -> None:
    op.drop_index("uq_booking_reschedules_pending_booking", table_name="booking_reschedules")
    op.drop_index("uq_booking_reschedules_pending_slot", table_name="booking_reschedules")
    op.drop_index(op.f("ix_booking_reschedules_booking_id"), table_name="booking_reschedules")
    op.drop_table("booking_reschedules")

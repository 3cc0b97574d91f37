"""practitioners' time off: blocked days or hours that no slot is offered in

Revision ID: 0011
Revises: 0005
Create Date: 2026-12-04 07:00:00.000000

One row per block (a day, a range of days or part of a day), in UTC like every other time.
The slot computation reads the blocks of one practitioner that end after now, hence the
index on (therapist_id, ends_at).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "time_off",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=60), nullable=False),
        sa.Column("created_at", core.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["therapist_id"], ["therapists.id"], name=op.f("fk_time_off_therapist_id_therapists")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_off")),
    )
    op.create_index("ix_time_off_therapist_id_ends_at", "time_off", ["therapist_id", "ends_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_time_off_therapist_id_ends_at", table_name="time_off")
    op.drop_table("time_off")

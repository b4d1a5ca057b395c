"""share spans: per-account sums of the share log for fast PPLNS windows

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# accounting.spans.SPAN when this revision was written; the data step below must not
# follow later changes of the constant.
SPAN = 16_384


def upgrade() -> None:
    op.create_table(
        "share_spans",
        sa.Column("coin", sa.String(length=32), nullable=False),
        sa.Column("span", sa.BigInteger(), nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("weight", sa.Text(), nullable=False),
        sa.Column("first_time", sa.Float(), nullable=False),
        sa.Column("last_time", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("coin", "span", "account"),
    )
    # Whole spans of shares stored before this revision are not summarised (their rows
    # are read one by one, as before); the span the newest share is in is summarised
    # from its rows when the writer completes it.
    first = (
        op.get_bind()
        .execute(sa.text(f"SELECT (COALESCE(MAX(seq), -1) + 1) / {SPAN} FROM shares"))
        .scalar_one()
    )
    op.get_bind().execute(
        sa.text(
            "INSERT INTO state (key, value) VALUES ('share_spans_base', :v), "
            "('share_spans_upto', :v)"
        ),
        {"v": int(first)},
    )


def downgrade() -> None:
    op.get_bind().execute(sa.text("DELETE FROM state WHERE key LIKE 'share_spans_%'"))
    op.drop_table("share_spans")

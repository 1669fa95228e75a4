"""The measured delivery of a flexibility day (lemgrid.service.grid).

Revision ID: 0014
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    add_column_if_missing("grid_days", sa.Column("delivery_seq", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("grid_days", "delivery_seq")

"""Minimum acceptance quantities of flexibility offers (lemgrid.service.grid).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    add_column_if_missing("flex_offers", sa.Column("min_power_w", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("flex_offers", "min_power_w")

"""Minimum acceptance quantities of flexibility offers (lemgrid.service.grid).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    bind = op.get_bind()
    # a database created at 0004 by today's declarations already has the column
    if "min_power_w" not in {c["name"] for c in sa.inspect(bind).get_columns("flex_offers")}:
        op.add_column("flex_offers", sa.Column("min_power_w", sa.BigInteger, nullable=False,
                                               server_default="0"))


def downgrade() -> None:
    op.drop_column("flex_offers", "min_power_w")

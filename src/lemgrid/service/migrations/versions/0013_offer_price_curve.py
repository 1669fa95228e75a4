"""A flexibility offer's price curve (UMEI's interpolated orders; lemgrid.service.grid).

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    add_column_if_missing("flex_offers", sa.Column("price_points", sa.Text, nullable=False,
                                                   server_default=""))


def downgrade() -> None:
    op.drop_column("flex_offers", "price_points")

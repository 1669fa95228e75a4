"""The validity of continuous-session orders (lemgrid.service.intraday).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    add_column_if_missing("orders", sa.Column("valid_until_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "valid_until_ms")

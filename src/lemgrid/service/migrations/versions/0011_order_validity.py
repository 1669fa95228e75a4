"""The validity of continuous-session orders (lemgrid.service.intraday).

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    bind = op.get_bind()
    # a database created at 0001 by today's declarations already has the column
    if "valid_until_ms" not in {c["name"] for c in sa.inspect(bind).get_columns("orders")}:
        op.add_column("orders", sa.Column("valid_until_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "valid_until_ms")

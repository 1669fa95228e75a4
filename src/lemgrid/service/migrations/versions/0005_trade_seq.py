"""Trades carry their ledger position (``seq``): continuous sessions record trades as orders
arrive, and a session's trades are listed in the order they were made (lemgrid.service.intraday).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # A database created at 0001 by today's declarations has the column already.
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("trades")}
    if "seq" not in columns:
        op.add_column("trades", sa.Column("seq", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trades") as batch:
        batch.drop_column("seq")

"""The buyer of a grid operator's flexibility request: the TSO's, or the DSO's own planned
products (UMEI buy orders of the DSO; lemgrid.service.grid).

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    add_column_if_missing("tso_requests", sa.Column("buyer", sa.String(8), nullable=False,
                                                    server_default="TSO"))


def downgrade() -> None:
    op.drop_column("tso_requests", "buyer")

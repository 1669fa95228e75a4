"""The bus area of a TSO's flexibility request (lemgrid.service.grid).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    add_column_if_missing("tso_requests", sa.Column("buses", sa.Text, nullable=False,
                                                    server_default=""))


def downgrade() -> None:
    op.drop_column("tso_requests", "buses")

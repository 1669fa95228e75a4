"""The bus area of a TSO's flexibility request (lemgrid.service.grid).

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    bind = op.get_bind()
    # a database created at 0006 by today's declarations already has the column
    if "buses" not in {c["name"] for c in sa.inspect(bind).get_columns("tso_requests")}:
        op.add_column("tso_requests", sa.Column("buses", sa.Text, nullable=False,
                                                server_default=""))


def downgrade() -> None:
    op.drop_column("tso_requests", "buses")

"""The DSO's long-term products: an offer's availability price and the reservations
(lemgrid.service.grid); a UMEI order's long-flex contract (lemgrid.service.umei).

Revision ID: 0015
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

from lemgrid.service.migrations import add_column_if_missing

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    from lemgrid.service.grid import reservations

    add_column_if_missing("flex_offers", sa.Column("availability_meur_per_kw_h", sa.BigInteger,
                                                   nullable=False, server_default="0"))
    add_column_if_missing("umei_orders", sa.Column("longflex_contract_id", sa.String(200),
                                                   nullable=True))
    # checkfirst: a database created at 0004 by today's declarations already has it.
    reservations.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    from lemgrid.service.grid import reservations

    reservations.drop(op.get_bind())
    op.drop_column("umei_orders", "longflex_contract_id")
    op.drop_column("flex_offers", "availability_meur_per_kw_h")

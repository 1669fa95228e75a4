"""Initial schema: the server's tables and the ledger's ``ledger_*`` tables.

Revision ID: 0001
Revises:
"""
from alembic import op

from lemgrid.ledger.sqldb import METADATA as LEDGER
from lemgrid.service.tables import METADATA as SERVER

revision = "0001"
down_revision = None


def upgrade() -> None:
    # The first revision is the schema as declared; later revisions change it with explicit ops.
    bind = op.get_bind()
    SERVER.create_all(bind)
    LEDGER.create_all(bind)

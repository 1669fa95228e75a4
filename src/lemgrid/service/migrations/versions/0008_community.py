"""Community sessions: the manager's terms, the members' bids and the published results
(lemgrid.service.community).

Revision ID: 0008
Revises: 0007
"""
from alembic import op

from lemgrid.service.tables import COMMUNITY_TABLES, METADATA

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    METADATA.create_all(op.get_bind(), tables=list(COMMUNITY_TABLES), checkfirst=True)


def downgrade() -> None:
    METADATA.drop_all(op.get_bind(), tables=list(COMMUNITY_TABLES))

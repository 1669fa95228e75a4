"""Sealed-bid sessions: their reveal windows and the commitments posted.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from lemgrid.service.tables import METADATA, SEALED_TABLES

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    METADATA.create_all(op.get_bind(), tables=list(SEALED_TABLES), checkfirst=True)

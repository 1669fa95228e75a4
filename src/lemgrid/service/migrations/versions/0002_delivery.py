"""Delivery: meter readings, delivery settlements and statements of delivered sessions.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from lemgrid.service.tables import DELIVERY_TABLES, METADATA

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # checkfirst: a database created at 0001 by today's declarations already has them.
    METADATA.create_all(op.get_bind(), tables=list(DELIVERY_TABLES), checkfirst=True)

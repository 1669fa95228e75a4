"""UMEI: challenges, bearer tokens, baselines, meter readings and the orders posted through
``/umei`` (lemgrid.service.umei).

Revision ID: 0007
Revises: 0006
"""
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    from lemgrid.service.umei.tables import METADATA as UMEI

    UMEI.create_all(op.get_bind())


def downgrade() -> None:
    from lemgrid.service.umei.tables import METADATA as UMEI

    UMEI.drop_all(op.get_bind())

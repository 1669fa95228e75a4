"""The DSO's tables: traffic lights, flexibility offers and activations (lemgrid.service.grid).

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    from lemgrid.service.grid import METADATA as GRID

    GRID.create_all(op.get_bind())


def downgrade() -> None:
    from lemgrid.service.grid import METADATA as GRID

    GRID.drop_all(op.get_bind())

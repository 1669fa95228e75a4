"""The DSO's tables: traffic lights, flexibility offers and activations (lemgrid.service.grid).

Revision ID: 0002_grid
Revises: 0001
"""
from alembic import op

revision = "0002_grid"
down_revision = "0001"


def upgrade() -> None:
    from lemgrid.service.grid import METADATA as GRID

    GRID.create_all(op.get_bind())


def downgrade() -> None:
    from lemgrid.service.grid import METADATA as GRID

    GRID.drop_all(op.get_bind())

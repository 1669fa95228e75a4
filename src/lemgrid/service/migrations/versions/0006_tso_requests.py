"""The TSO's flexibility requests over the API (lemgrid.service.grid.tso_requests).

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    from lemgrid.service.grid import tso_requests

    # checkfirst: a database created at 0004 by today's declarations already has it.
    tso_requests.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    from lemgrid.service.grid import tso_requests

    tso_requests.drop(op.get_bind())

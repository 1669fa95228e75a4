"""Alembic environment: runs on the connection :func:`lemgrid.service.migrations.upgrade` gives."""

from alembic import context

from lemgrid.ledger.sqldb import METADATA as LEDGER
from lemgrid.service.tables import METADATA as SERVER

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=[SERVER, LEDGER])
with context.begin_transaction():
    context.run_migrations()

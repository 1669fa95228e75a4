"""Alembic migrations of the server's database (its tables and the ledger's).

:func:`upgrade` brings a database to the newest revision; ``lemgrid serve`` calls it on start.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

HERE = Path(__file__).parent


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations on ``engine`` up to ``revision``."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def add_column_if_missing(table: str, column: object) -> None:
    """Inside a revision: add ``column`` (a ``sqlalchemy.Column``) to ``table`` unless it is
    there already (a database created at an earlier revision by today's table declarations has
    it)."""
    import sqlalchemy as sa
    from alembic import op

    name = column.name  # type: ignore[attr-defined]
    if name not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        op.add_column(table, column)  # type: ignore[arg-type]

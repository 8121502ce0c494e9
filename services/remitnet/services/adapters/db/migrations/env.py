from __future__ import annotations

from alembic import context

from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import metadata

config = context.config


def run() -> None:
    db = config.attributes.get("database")
    if db is None:
        db = Database(config.get_main_option("sqlalchemy.url") or "sqlite:///remitnet.db")
    # The whole upgrade in one transaction begun here, before alembic reads
    # the version: on SQLite that BEGIN is Database's BEGIN IMMEDIATE, so
    # hubs started at once on a new file migrate one after another (alembic
    # assumes non-transactional DDL there and ran each statement on its
    # own: two of them altered the same table, and one exited with
    # "duplicate column name").
    with db.engine.connect() as connection, connection.begin():
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run()

from __future__ import annotations

from alembic import context

from remitnet.services.adapters.db.database import Database
from remitnet.services.adapters.db.schema import metadata

config = context.config


def run() -> None:
    db = config.attributes.get("database")
    if db is None:
        db = Database(config.get_main_option("sqlalchemy.url") or "sqlite:///remitnet.db")
    with db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()

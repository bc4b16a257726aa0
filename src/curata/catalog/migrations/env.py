"""Alembic environment: runs on the connection the Catalog hands over (or the configured URL)."""

from alembic import context
from sqlalchemy import create_engine

import curata.annotate.models
import curata.catalog.models as models
import curata.collect.clinical.models
import curata.collect.genomics.models
import curata.collect.net.models
import curata.collect.wsi.models
import curata.publish.models
import curata.select.models
import curata.server.models  # noqa: F401  (platform tables)

target_metadata = models.Base.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()

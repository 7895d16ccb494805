"""The Alembic environment both services' ``migrations/env.py`` delegate to.

Flask-Migrate runs it inside an app context; the engine and metadata come
from the service's Flask-SQLAlchemy extension, so migrations always target
the database the service is configured for. Logging is left to the
process's own configuration (UTC, one line per event).
"""

import logging

from alembic import context
from flask import current_app

log = logging.getLogger("alembic.env")


def run_migrations() -> None:
    """Run the pending migrations online (offline SQL generation is not supported)."""
    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported; run against a database")
    extension = current_app.extensions["migrate"]
    config = context.config

    def skip_empty_autogenerate(_context, _revision, directives):
        # `flask db migrate` with no model change should not write an empty revision.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            log.info("No changes in schema detected.")

    arguments = dict(extension.configure_args)
    arguments.setdefault("process_revision_directives", skip_empty_autogenerate)
    arguments.setdefault("compare_type", True)
    with extension.db.engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=extension.db.metadata,
            **arguments,
        )
        with context.begin_transaction():
            context.run_migrations()

"""Schema migrations of every service: wait for PostgreSQL, migrate under a lock.

Containers start before their database accepts connections, and several
replicas may start at once: :func:`upgrade_database` retries until the
database answers, then applies the Alembic migrations while holding a
PostgreSQL advisory lock, so exactly one process migrates and the others
wait and find nothing left to do. :func:`run_migrations` is the Alembic
environment every service's migrations run in (``common/db/alembic/env.py``
calls it, with the service's ``migrations/versions``).

The migrations run as the database's owner role (``MIGRATION_DATABASE_URL``);
the services serve as another role, which may read and write rows but
neither change nor drop the schema. After upgrading, :func:`grant_serving_role`
gives that role (the user of the serving URL, when it is not the owner)
exactly that on every table and sequence, new ones included.
"""

import logging
import time
from pathlib import Path

from alembic import context
from flask import Flask, current_app
from flask_migrate import upgrade
from flask_sqlalchemy import SQLAlchemy
from psycopg2.errors import LockNotAvailable
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)
alembic_log = logging.getLogger("alembic.env")

# Arbitrary constant shared by every replica of every service that migrates.
MIGRATION_LOCK_ID = 7_404_001
# The Alembic environment every service shares; each has only its revisions.
ALEMBIC_DIR = Path(__file__).parent / "alembic"


def install_migrations(app: Flask, db: SQLAlchemy, versions: Path) -> None:
    """Give ``app`` Flask-Migrate, on the shared environment and the service's ``versions``."""
    from flask_migrate import Migrate

    migrate = Migrate(app, db, directory=str(ALEMBIC_DIR))

    @migrate.configure
    def find_this_services_revisions(config):
        config.set_main_option("version_locations", str(versions))
        return config


def wait_for_database(engine: Engine, *, timeout: float) -> None:
    """Return once a connection succeeds; raise the last error after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except OperationalError as error:
            if time.monotonic() >= deadline:
                raise
            reason = str(error.orig).strip().splitlines()[0] if error.orig else error
            log.warning("database not ready (%s); retrying in %.1fs", reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def migrate_app(app: Flask) -> None:
    """Bring the app's database to its latest migration (the launcher's ``migrate`` role).

    ``app`` is built with ``process="migrate"``: its engine is the owner's,
    and it has Flask-Migrate (:func:`install_migrations`).
    """
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    serving_role = make_url(app.config["SERVING_DATABASE_URI"]).username
    upgrade_database(
        app,
        engine,
        timeout=app.config["DB_CONNECT_TIMEOUT_SECONDS"],
        serving_role=serving_role,
    )


class MigrationLockTimeoutError(RuntimeError):
    """A migration gave up waiting for a table lock: nothing was applied; run it again."""


def upgrade_database(
    app: Flask,
    engine: Engine,
    *,
    timeout: float,
    serving_role: str | None = None,
) -> None:
    """Bring the schema to the latest migration, one process at a time; then grant it.

    The migration's connections wait at most ``lock_timeout`` (the migrate
    process's session limit) for a table lock: rather than queue every
    request behind it while a long statement holds the table, the run fails
    with :class:`MigrationLockTimeoutError` (its transaction rolled back, nothing
    applied), and the launcher's restart or the orchestrator runs it again.
    The advisory lock that makes replicas take turns is waited for without
    that bound: another replica's migration may rightly take long.
    """
    wait_for_database(engine, timeout=timeout)
    with app.app_context(), engine.connect() as lock_connection:
        lock_connection.execute(text("SET LOCAL lock_timeout = 0"))
        lock_connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        lock_connection.execute(text("RESET lock_timeout"))
        try:
            try:
                upgrade(directory=str(ALEMBIC_DIR))
            except OperationalError as error:
                if not isinstance(error.orig, LockNotAvailable):
                    raise
                waited = lock_connection.execute(text("SHOW lock_timeout")).scalar()
                message = (
                    f"migration stopped: a table lock was not granted within {waited} "
                    "(a long statement or transaction holds it); nothing was applied; "
                    "it runs again when the migration is restarted"
                )
                log.error("%s", message)
                raise MigrationLockTimeoutError(message) from None
            if serving_role:
                grant_serving_role(lock_connection, serving_role)
        finally:
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
            )
            lock_connection.commit()
    log.info("database schema is up to date")


def grant_serving_role(connection: Connection, role: str) -> None:
    """Let ``role`` read and write the rows of every table, and change nothing else.

    Run as the owner, after the upgrade, in the migration lock. Nothing to
    do when the serving URL's user is the owner itself (one role for all, as
    with a development database). Alembic's own table stays read-only for
    the serving role: only migrations move the schema's version.
    """
    if role == connection.execute(text("SELECT current_user")).scalar():
        return
    who = connection.dialect.identifier_preparer.quote(role)
    for statement in (
        f"GRANT USAGE ON SCHEMA public TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {who}",
        # Tables the owner creates outside a migration run are the serving role's too.
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {who}",
        f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {who}",
    ):
        connection.execute(text(statement))
    connection.commit()
    log.info("granted the serving role %s its tables", role)


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
            alembic_log.info("No changes in schema detected.")

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

"""A migration that cannot have its table lock gives up quickly and clearly, then runs again.

While a migration waits for a table lock, every request touching that table
queues behind it. Here a long transaction (as the worker's bulk statements
are) holds every table of a scratch copy of the User Manager's database, one
migration short of the latest: the migration must fail within its lock
timeout with nothing applied, and succeed once run again after the lock is gone.
"""

import threading
import time

import psycopg2
import pytest
from alembic.script import ScriptDirectory
from flask_migrate import upgrade

from common.db.connections import MIGRATION_LOCK_TIMEOUT_MS
from common.db.migrations import ALEMBIC_DIR, MigrationLockTimeoutError, migrate_app
from tests.utils import run_sql
from user_manager.app import create_app

pytestmark = pytest.mark.local_stack
# Far beyond the lock timeout: a migration still waiting then would wait forever.
GIVE_UP_SECONDS = 30


def test_a_migration_behind_a_long_transaction_fails_fast_and_runs_again(scratch_database):
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": scratch_database, "MIGRATION_DATABASE_URL": scratch_database},
        process="migrate",
    )
    with app.app_context():
        scripts = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        head = scripts.get_current_head()
        previous = scripts.get_revision(head).down_revision
        upgrade(directory=str(ALEMBIC_DIR), revision=previous)
    tables = [
        row[0]
        for row in run_sql(
            scratch_database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    ]

    # Writers and DDL conflict with this lock; plain reads do not.
    holder = psycopg2.connect(scratch_database)
    holder.cursor().execute(f"LOCK TABLE {', '.join(tables)} IN SHARE ROW EXCLUSIVE MODE")
    outcome: dict = {}

    def migrate() -> None:
        started = time.monotonic()
        try:
            migrate_app(app)
            outcome["error"] = None
        except Exception as error:
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - started

    running = threading.Thread(target=migrate)
    running.start()
    running.join(GIVE_UP_SECONDS)
    try:
        assert not running.is_alive(), f"the migration still waits after {GIVE_UP_SECONDS}s"
    finally:
        holder.rollback()
        running.join(GIVE_UP_SECONDS)
        holder.close()
    assert isinstance(outcome["error"], MigrationLockTimeoutError), outcome
    assert "not granted within 2s" in str(outcome["error"])
    assert outcome["seconds"] < MIGRATION_LOCK_TIMEOUT_MS / 1000 + 10
    version = run_sql(scratch_database, "SELECT version_num FROM alembic_version")
    assert version == [(previous,)]  # nothing applied

    migrate_app(app)  # run again, nobody in the way
    assert run_sql(scratch_database, "SELECT version_num FROM alembic_version") == [(head,)]
    with app.app_context():
        app.extensions["sqlalchemy"].engine.dispose()

"""Alembic environment of the User Manager (shared logic in common.db.migrations)."""

from common.db.migrations import run_migrations

run_migrations()

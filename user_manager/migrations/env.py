"""Alembic environment of the User Manager (shared logic in common.migration_env)."""

from common.migration_env import run_migrations

run_migrations()

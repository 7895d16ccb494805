"""Alembic environment of the Data Collector (shared logic in common.migration_env)."""

from common.migration_env import run_migrations

run_migrations()

"""Alembic environment of every service (its revisions: ``<service>/migrations/versions``)."""

from common.db.migrations import run_migrations

run_migrations()

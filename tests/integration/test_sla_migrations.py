"""The SLA detector's migrations keep a stored configuration one that reads back."""

import json

import pytest
from flask_migrate import upgrade

from common.db.migrations import ALEMBIC_DIR, migrate_app
from sla_detector import configuration
from sla_detector.app import create_app
from tests.utils import run_sql

pytestmark = pytest.mark.local_stack


def test_a_check_rarer_than_a_day_stored_before_the_limit_becomes_daily(scratch_database):
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": scratch_database, "MIGRATION_DATABASE_URL": scratch_database},
        process="migrate",
    )
    weekly = {"metrics": [{"name": "up", "query": "min(up)", "min": 1}], "check_seconds": 604800}
    with app.app_context():
        upgrade(directory=str(ALEMBIC_DIR), revision="0001")
    run_sql(
        scratch_database,
        "UPDATE detector_state SET document = %s, source = 'api'",
        (json.dumps(weekly),),
    )

    migrate_app(app)

    with app.app_context():
        in_force = configuration.current()
        app.extensions["sqlalchemy"].engine.dispose()
    assert in_force.check_seconds == 86400
    assert [metric.name for metric in in_force.metrics] == ["up"]

"""PostgreSQL formats the times the services serve exactly as Python does."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime, literal, select

from common.timeutil import isoformat_utc, isoformat_utc_sql
from data_collector.models import db

pytestmark = pytest.mark.local_stack

MOMENTS = [
    datetime(2026, 12, 2, 7, 40, tzinfo=UTC),
    datetime(2026, 12, 2, 7, 40, 5, 500_000, tzinfo=UTC),
    datetime(2026, 12, 2, 7, 40, 5, 1, tzinfo=UTC),
    datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    # Another zone is served in UTC; a year before 1000 keeps its four digits.
    datetime(2026, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(99, 1, 1, tzinfo=UTC),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_isoformat_utc_sql_is_isoformat_utc(dc_app, moment):
    with dc_app.app_context():
        formatted = select(isoformat_utc_sql(literal(moment, DateTime(timezone=True))))
        assert db.session.execute(formatted).scalar_one() == isoformat_utc(moment)
        db.session.remove()

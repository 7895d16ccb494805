"""Reconciliation never wipes the interests of users a User Manager has lost."""

import pytest

from tests.utils import metric, reconcile_interests, run_sql

pytestmark = pytest.mark.local_stack


def test_a_user_manager_that_lost_most_users_gets_no_interest_removed(collector):
    followers = [collector.follow_without_waiting("LIRF") for _ in range(5)]
    collector.sql("UPDATE user_interests SET created_at = now() - interval '1 hour'")
    # The User Manager restored from a backup taken before four of them registered.
    run_sql(
        collector.stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "DELETE FROM users WHERE email = ANY(%s)",
        (followers[1:],),
    )

    refused = reconcile_interests(collector.stack)
    assert collector.sql("SELECT count(*) FROM user_interests") == [(5,)]
    assert refused == {"outcome": "refused", "removed": 0, "unknown_users": 4, "users": 5}
    seen = collector.dc.get("/health").json()["opensky"]["interest_reconciliation"]
    assert {k: seen[k] for k in refused} == refused and seen["ran_at"]
    assert metric(collector.dc, "interest_reconciliation_refused") == 1

    # The users really are gone: the operator lets the pass remove them all.
    done = reconcile_interests(collector.stack, "--max-share", "1")
    assert done == {"outcome": "done", "removed": 4, "unknown_users": 4, "users": 5}
    assert collector.sql("SELECT user_email FROM user_interests") == [(followers[0],)]
    assert collector.dc.get("/health").json()["opensky"]["interest_reconciliation"]["removed"] == 4
    assert metric(collector.dc, "interest_reconciliation_refused") == 0

"""Under the collection lock: one periodic cycle per period across replicas, fresh state."""

import pytest

from data_collector.collection import cycle as collection
from data_collector.models import CollectorState, db

pytestmark = pytest.mark.local_stack


@pytest.fixture
def client(collector_app):
    return collection.client_from_config(collector_app.config)


def last_cycle(collector, *, minutes_ago: float, outcome: str = "done") -> None:
    collector.sql(
        "UPDATE collector_state SET last_cycle_started_at = now() - %s * interval '1 minute', "
        "last_periodic_cycle_started_at = now() - %s * interval '1 minute', "
        "last_cycle_outcome = %s",
        (minutes_ago, minutes_ago, outcome),
    )


def test_a_periodic_cycle_is_skipped_when_any_replica_started_one_this_period(
    collector, collector_app, client
):
    interval = collector_app.config["COLLECT_INTERVAL_MINUTES"]
    last_cycle(collector, minutes_ago=interval / 2)
    assert collection.run_cycle(client=client, periodic=True).outcome == "skipped"
    # A requested cycle (a new interest, a retry) runs whatever the schedule...
    assert collection.run_cycle(client=client).outcome == "done"

    last_cycle(collector, minutes_ago=interval)
    # ... and does not postpone the periodic one, whose turn it now is.
    assert collection.run_cycle(client=client).outcome == "done"
    assert collection.run_cycle(client=client, periodic=True).outcome == "done"
    assert collection.run_cycle(client=client, periodic=True).outcome == "skipped"
    # A cycle left "running" died with its process: the next periodic one catches up.
    last_cycle(collector, minutes_ago=1, outcome="running")
    assert collection.run_cycle(client=client, periodic=True).outcome == "done"


def test_a_wait_another_replica_stored_is_seen_once_the_lock_is_held(collector, client):
    # This session has read the state row before the lock, and still holds it.
    state = db.session.get(CollectorState, 1)
    assert state.not_before is None
    collector.sql("UPDATE collector_state SET not_before = now() + interval '1 hour'")
    assert collection.run_cycle(client=client).outcome == "waiting"

"""Each service's own metrics move when their behaviour happens.

(The shared HTTP and gRPC metrics are tested in test_observability.py.)

Collection metrics come from the Data Collector's worker process and are read
from a web worker's ``/metrics``: this also checks that multiprocess mode
carries them across processes.
"""

import time

import pytest

from tests.integration.collector_support import sample_dataset
from tests.utils import create_user, metric, new_key, user_payload, wait_until


# Requests and scrapes through a balancer may reach different replicas.
@pytest.mark.one_replica
def test_idempotency_replays_and_conflicts_are_counted(um):
    replays_post = metric(um, "idempotency_replays_total", method="POST")
    replays_delete = metric(um, "idempotency_replays_total", method="DELETE")
    conflicts = metric(um, "idempotency_conflicts_total", status="422")

    body, key = user_payload(), new_key()
    assert um.post("/users", json=body, headers=key).status_code == 201
    replay = um.post("/users", json=body, headers=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert um.post("/users", json=user_payload(), headers=key).status_code == 422
    delete_key = new_key()
    for _ in range(2):
        assert um.delete(f"/users/{body['email']}", headers=delete_key).status_code == 200

    assert metric(um, "idempotency_replays_total", method="POST") == replays_post + 1
    assert metric(um, "idempotency_replays_total", method="DELETE") == replays_delete + 1
    assert metric(um, "idempotency_conflicts_total", status="422") == conflicts + 1


def test_the_outbox_backlog_is_read_from_the_database_at_each_scrape(um):
    # Delivered at once while the collector is up: nothing waits (the collector-down
    # case is in test_users_outbox, which stops it anyway).
    email = create_user(um)
    assert um.delete(f"/users/{email}", headers=new_key()).status_code == 200
    backlog = um.get("/health").json()["outbox"]["backlog"]
    assert metric(um, "outbox_backlog_messages") == backlog
    assert metric(um, "outbox_oldest_pending_seconds") >= 0


def test_collection_cycles_flights_requests_and_credits(collector):
    dc = collector.dc
    before = {
        "done": metric(dc, "collection_cycles_total", outcome="done"),
        "flights": metric(dc, "flights_stored_total"),
        "arrival_requests": metric(dc, "opensky_requests_total", endpoint="arrival", outcome="ok"),
    }
    collector.sim.load_dataset(sample_dataset())

    cycle = collector.follow("LIRF")

    assert cycle["outcome"] == "done" and cycle["flights_stored"] > 0
    # The worker counts a cycle right after recording it for /health.
    wait_until(lambda: metric(dc, "collection_cycles_total", outcome="done") == before["done"] + 1)
    assert metric(dc, "flights_stored_total") == before["flights"] + cycle["flights_stored"]
    arrival_calls = [
        c for c in collector.flight_calls() if c["endpoint"] == "arrival" and c["status"] == 200
    ]
    assert arrival_calls
    assert metric(dc, "opensky_requests_total", endpoint="arrival", outcome="ok") == before[
        "arrival_requests"
    ] + len(arrival_calls)
    credits = dc.get("/health").json()["opensky"]["credits_remaining"]
    assert credits is not None
    assert metric(dc, "opensky_credits_remaining") == credits


def test_a_rate_limited_cycle_and_its_429_are_counted(collector):
    dc = collector.dc
    limited_cycles = metric(dc, "collection_cycles_total", outcome="rate-limited")
    limited_requests = metric(
        dc, "opensky_requests_total", endpoint="departure", outcome="rate_limited"
    )
    collector.sim.load_dataset(sample_dataset())
    collector.sim.inject([{"status": 429, "retry_after": 1}], endpoint="departure")

    assert collector.follow("LIMC")["outcome"] == "rate-limited"

    wait_until(
        lambda: metric(dc, "collection_cycles_total", outcome="rate-limited") == limited_cycles + 1
    )
    assert (
        metric(dc, "opensky_requests_total", endpoint="departure", outcome="rate_limited")
        == limited_requests + 1
    )
    # Let the resumed cycle finish before the next test wipes the tables.
    done = collector.wait_for_cycle(time.time() - 0.5, timeout=30)
    while done["outcome"] != "done":
        done = collector.wait_for_cycle(time.time(), timeout=30)

"""Following an airport collects exactly what OpenSky serves, once."""

import time
from datetime import UTC, datetime

import psycopg2
import pytest

from data_collector.collection import cycle
from tests.integration.collector_support import (
    DAY,
    as_api,
    keyed,
    make_flight,
    today_start,
    without_type,
)
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack


def test_following_an_airport_stores_what_the_simulator_serves_and_asks_only_once(collector):
    begin = today_start() - 2 * DAY
    cycle = collector.follow("LIRF")
    assert cycle["outcome"] == "done"

    calls = collector.flight_calls()
    assert {(c["endpoint"], c["params"]["airport"]) for c in calls} == {
        ("arrival", "LIRF"),
        ("departure", "LIRF"),
    }
    # Per direction: the two past days in one request (30 credits), today in one (4).
    assert sorted(c["cost"] for c in calls) == [4, 4, 30, 30]
    assert cycle["requests"] == 4 and cycle["credits_spent"] == 68
    remaining = collector.sim.credits()["sim-client"]["remaining"]
    assert collector.dc.get("/health").json()["opensky"]["credits_remaining"] == remaining
    first_call = min(c["started_at"] for c in calls)

    for direction, flight_type in (("arrival", "arrivals"), ("departure", "departures")):
        end = max(int(c["params"]["end"]) for c in calls if c["endpoint"] == direction)
        truth = collector.sim.ground_truth("LIRF", begin, end, direction)
        assert truth, "the synthetic world always has flights at LIRF"
        every = keyed([as_api(f) for f in truth])
        # Served: every flight landed before the first request; at most those landed by now.
        landed_before = keyed([as_api(f) for f in truth if f["lastSeen"] <= first_call])
        stored = keyed(without_type(collector.stored("LIRF", flight_type)))
        assert landed_before.keys() <= stored.keys() <= every.keys()
        assert all(stored[key] == every[key] for key in stored)

    rows = collector.sql("SELECT count(*) FROM flight_data")[0][0]
    collector.sim.clear_calls()
    second = collector.run_cycle()
    assert second["outcome"] == "done"
    assert second["requests"] == 0
    assert collector.flight_calls() == []
    assert collector.sql("SELECT count(*) FROM flight_data")[0][0] == rows


def test_a_flight_in_the_air_at_a_fetch_is_collected_by_the_next_fetch_once_landed(
    collector, collector_app
):
    """OpenSky lists a flight only once it has landed, also as a departure.

    The first fetch of today sees the flight take off (it is in the air: not
    listed); it lands; the next fetch of today must list it as a departure,
    though it took off before the first fetch's end. Cycles run here with no
    minimum gap, so the second one asks for today at once.
    """
    collector_app.config["COLLECT_MIN_GAP_MINUTES"] = 0
    client = cycle.client_from_config(collector_app.config)
    took_off = int(time.time()) - 600
    # Departs LIRF and arrives at LIRF ten minutes ago, still in the air for an hour.
    in_the_air = [
        make_flight("e00001", "LIRF", "LIMC", took_off, minutes=70),
        make_flight("e00002", "LIMC", "LIRF", took_off, minutes=70),
    ]
    collector.sim.load_dataset(in_the_air)
    assert collector.follow("LIRF")["outcome"] == "done"
    assert collector.stored("LIRF") == []
    first_fetch_end = max(int(c["params"]["end"]) for c in collector.flight_calls())
    assert first_fetch_end >= took_off

    # Both land after the first fetch's end (and more than a second after it: OpenSky
    # refuses an interval that ends where it begins).
    wait_until(lambda: int(time.time()) > first_fetch_end + 1)
    landed = [{**flight, "lastSeen": int(time.time())} for flight in in_the_air]
    collector.sim.load_dataset(landed)
    assert cycle.run_cycle(client=client).outcome == "done"

    departures = keyed(without_type(collector.stored("LIRF", "departures")))
    arrivals = keyed(without_type(collector.stored("LIRF", "arrivals")))
    assert departures == keyed([as_api(landed[0])])
    assert arrivals == keyed([as_api(landed[1])])


def test_health_reports_database_and_opensky(collector):
    response = collector.dc.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert set(body["opensky"]) >= {"credits_remaining", "retry_after", "last_cycle"}


def test_health_answers_503_quickly_when_the_database_hangs(collector):
    connection = psycopg2.connect(collector.stack.database_urls["DATA_COLLECTOR_DATABASE_URL"])
    try:
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE collector_state IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = collector.dc.get("/health", timeout=10)
        assert response.status_code == 503 and response.json()["database"] == "unavailable"
        assert time.monotonic() - started < 5
    finally:
        connection.rollback()
        connection.close()
    assert collector.dc.get("/health").status_code == 200


def test_requests_for_a_cycle_coalesce_into_one(collector):
    with collector.paused():
        for _ in range(20):
            assert collector.dc.post("/collection/runs").status_code == 202
        assert collector.sql("SELECT count(*) FROM collection_requests") == [(1,)]
    wait_until(lambda: collector.sql("SELECT count(*) FROM collection_requests") == [(0,)])


def test_retention_runs_once_a_day(collector):
    insert_old = (
        "INSERT INTO flight_data (icao24, first_seen, last_seen) "
        "VALUES (%s, now() - interval '400 days', now() - interval '400 days')"
    )
    collector.sql(insert_old, ("d00001",))
    collector.run_cycle()
    assert collector.sql("SELECT icao24 FROM flight_data") == []
    ran_on = collector.sql("SELECT retention_ran_on FROM collector_state")[0][0]
    assert ran_on == datetime.now(UTC).date()

    # The next cycle the same day leaves retention alone.
    collector.sql(insert_old, ("d00002",))
    collector.run_cycle()
    assert collector.sql("SELECT icao24 FROM flight_data") == [("d00002",)]

"""OpenSky misbehaving: the collector retries, waits or skips, and ends with every flight once."""

import time

import pytest

from tests.integration.collector_support import assert_complete, sample_dataset, today_start
from tests.integration.conftest import COLLECTOR_TEST_ENV
from tests.utils import wait_until

pytestmark = pytest.mark.local_stack


@pytest.fixture
def flights(collector):
    dataset = sample_dataset()
    collector.sim.load_dataset(dataset)
    return dataset


@pytest.mark.parametrize(
    "failures",
    [
        [{"status": 500}, {"status": 502}, {"status": 503}],
        [{"kind": "timeout", "seconds": 3}],
    ],
    ids=["5xx", "timeout"],
)
def test_timeouts_and_server_errors_are_retried_with_backoff(collector, flights, failures):
    collector.sim.inject(failures, endpoint="arrival")
    cycle = collector.follow("LIRF")
    assert cycle["outcome"] == "done"
    assert collector.sim.pending_failures() == []

    def arrivals():
        calls = [c for c in collector.flight_calls() if c["endpoint"] == "arrival"]
        # A timed-out call is logged when the simulator finally answers it.
        return calls if sum(bool(c["injected"]) for c in calls) == len(failures) else None

    calls = wait_until(arrivals, timeout=10)
    failed = [c for c in calls if c["injected"]]
    # The same request was sent again after each failure, and then succeeded.
    same = [c for c in calls if c["params"] == failed[0]["params"]]
    success = next(c for c in same if c["status"] in (200, 404))
    assert success["started_at"] > max(c["started_at"] for c in failed)
    assert_complete(collector, flights)


def assert_cycle_is_over(collector) -> None:
    """The cycle consumed its request: nothing runs it again until asked (no hot loop)."""
    assert collector.sql("SELECT count(*) FROM collection_requests") == [(0,)]
    calls = len(collector.flight_calls())
    time.sleep(5 * float(COLLECTOR_TEST_ENV["COLLECT_POLL_SECONDS"]))
    assert len(collector.flight_calls()) == calls
    assert collector.last_cycle()["outcome"] == "partial"


@pytest.mark.parametrize("variant", ["truncated", "not_a_list", "bad_items", "out_of_range"])
def test_a_malformed_body_is_asked_for_again_within_the_request(collector, flights, variant):
    collector.sim.inject([{"kind": "malformed", "variant": variant}], endpoint="departure")
    cycle = collector.follow("LIRF")
    assert cycle["outcome"] == "done"
    calls = [c for c in collector.flight_calls() if c["endpoint"] == "departure"]
    bad = next(i for i, c in enumerate(calls) if c["injected"])
    again = calls[bad + 1]
    assert again["params"] == calls[bad]["params"] and again["status"] in (200, 404)
    assert_complete(collector, flights)


@pytest.mark.parametrize("variant", ["truncated", "not_a_list", "bad_items", "out_of_range"])
def test_a_body_malformed_at_every_attempt_is_skipped_whole_and_only_its_range_asked_again(
    collector, flights, variant
):
    attempts = int(COLLECTOR_TEST_ENV["OPENSKY_MAX_ATTEMPTS"])
    failures = [{"kind": "malformed", "variant": variant}] * attempts
    if not any(
        f["estDepartureAirport"] == "LIRF" and f["firstSeen"] >= today_start() for f in flights
    ):
        # In the first minutes after midnight UTC today's range, which the collector asks
        # first, has no flight yet: let that request through (a zero-second "timeout")
        # so that the malformed answer hits yesterday's range, which has flights.
        failures.insert(0, {"kind": "timeout", "seconds": 0})
    collector.sim.inject(failures, endpoint="departure")
    first = collector.follow("LIRF")
    assert first["outcome"] == "partial"
    assert_cycle_is_over(collector)
    bad = next(
        c
        for c in collector.flight_calls()
        if c["injected"] and c["injected"]["kind"] == "malformed"
    )
    bad_begin, bad_end = int(bad["params"]["begin"]), int(bad["params"]["end"])
    stored = collector.stored("LIRF", "departures")
    in_bad_range = [f for f in flights if f["estDepartureAirport"] == "LIRF"]
    in_bad_range = [f for f in in_bad_range if bad_begin <= f["firstSeen"] <= bad_end]
    assert in_bad_range, "the skipped range has flights in this dataset"
    assert not {f["icao24"] for f in in_bad_range} & {f["icao24"] for f in stored}

    collector.sim.clear_calls()
    second = collector.run_cycle()
    assert second["outcome"] == "done"
    again = collector.flight_calls()
    assert [(c["endpoint"], c["params"]["begin"]) for c in again] == [
        ("departure", bad["params"]["begin"])
    ]
    assert_complete(collector, flights)


def test_a_range_the_database_refuses_is_skipped_and_the_cycle_goes_on(collector, flights):
    # A real refusal from PostgreSQL, for one flight of yesterday's LIRF departures.
    collector.sql(
        "ALTER TABLE flight_data ADD CONSTRAINT test_refuse CHECK (icao24 <> 'a00004') NOT VALID"
    )
    try:
        first = collector.follow("LIRF")
        assert_cycle_is_over(collector)
        assert first["requests"] == 4
        stored = {f["icao24"] for f in collector.stored("LIRF")}
        assert "a00004" not in stored and {"a00002", "a00003"} <= stored
    finally:
        collector.sql("ALTER TABLE flight_data DROP CONSTRAINT test_refuse")
    collector.sim.clear_calls()
    assert collector.run_cycle()["outcome"] == "done"
    assert [c["endpoint"] for c in collector.flight_calls()] == ["departure"]
    assert_complete(collector, flights)


def test_an_expired_token_is_renewed_once_and_the_request_sent_again(collector, flights):
    collector.follow("LIRF")
    collector.sim.expire_tokens()
    collector.sim.clear_calls()

    cycle = collector.follow("LIMC")
    assert cycle["outcome"] == "done"
    calls = collector.sim.calls()
    assert calls[0]["status"] == 401
    assert calls[1]["endpoint"] == "token" and calls[1]["status"] == 200
    assert calls[2]["params"] == calls[0]["params"] and calls[2]["status"] in (200, 404)
    assert [c["endpoint"] for c in calls].count("token") == 1
    assert_complete(collector, flights, airports=("LIRF", "LIMC"))


def test_a_429_stops_the_cycle_until_retry_after_has_passed(collector, flights):
    retry_after = 3
    collector.sim.inject([{"status": 429, "retry_after": retry_after}], endpoint="departure")
    asked_at = time.time()
    first = collector.follow("LIRF")
    assert first["outcome"] == "rate-limited"
    health = collector.dc.get("/health").json()["opensky"]
    assert health["retry_after"] is not None

    done = collector.wait_for_cycle(asked_at + 0.001, timeout=30)
    while done["outcome"] != "done":
        done = collector.wait_for_cycle(time.time(), timeout=30)
    calls = collector.flight_calls()
    limited = next(i for i, c in enumerate(calls) if c["status"] == 429)
    assert limited == len(calls) - 1 or calls[limited + 1]["started_at"] >= (
        calls[limited]["finished_at"] + retry_after - 0.05
    )
    assert all(c["status"] != 429 for c in calls[limited + 1 :])
    assert len(calls) > limited + 1, "collection resumed after the wait"
    assert collector.dc.get("/health").json()["opensky"]["retry_after"] is None
    assert_complete(collector, flights)


def test_refetching_updates_a_late_filled_arrival_without_duplicating(collector, flights):
    unknown = [dict(f, estArrivalAirport=None) if f["icao24"] == "a00004" else f for f in flights]
    collector.sim.load_dataset(unknown)
    collector.follow("LIRF", "EGLL")
    assert not any(f["icao24"] == "a00004" for f in collector.stored("EGLL", "arrivals"))

    # OpenSky's nightly batch fills the arrival in; the day is fetched again.
    collector.sim.load_dataset(flights)
    collector.sql("DELETE FROM collected_days")
    collector.run_cycle()
    assert [f["icao24"] for f in collector.stored("EGLL", "arrivals")] == ["a00004"]
    assert_complete(collector, flights, airports=("LIRF", "EGLL"))

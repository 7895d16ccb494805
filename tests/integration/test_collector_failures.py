"""OpenSky misbehaving: the collector retries, waits or skips, and ends with every flight once.

A range that still fails is asked for again on its own schedule (here 2 s, then 4 s),
without anybody asking for a cycle.
"""

import time

import pytest

from tests.integration.collector_support import (
    CYCLE_TIMEOUT,
    DAY,
    assert_complete,
    parse_iso,
    today_start,
)
from tests.integration.conftest import COLLECTOR_TEST_ENV
from tests.utils import metric, wait_until

pytestmark = pytest.mark.local_stack


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


RETRY_FIRST = float(COLLECTOR_TEST_ENV["COLLECT_RETRY_FIRST_SECONDS"])
MAX_ATTEMPTS = int(COLLECTOR_TEST_ENV["OPENSKY_MAX_ATTEMPTS"])


def retries(collector) -> dict:
    """The ``retries`` part of ``GET /health``."""
    return collector.dc.get("/health").json()["opensky"]["retries"]


def assert_waits_for_its_retry(collector) -> dict:
    """The failed range waits for its retry, and nothing asks for it before then."""
    assert collector.sql("SELECT count(*) FROM collection_requests") == [(0,)]
    waiting = retries(collector)
    assert waiting["waiting"] == 1, waiting
    (retry,) = waiting["ranges"]
    assert waiting["next_attempt_at"] == retry["next_attempt_at"]
    assert retry["attempts"] == 1 and retry["airport"] == "LIRF", retry
    assert parse_iso(retry["next_attempt_at"]) - parse_iso(retry["first_failed_at"]) == (
        pytest.approx(RETRY_FIRST, abs=0.01)
    )
    calls = len(collector.flight_calls())
    time.sleep(max(0.0, parse_iso(retry["next_attempt_at"]) - time.time() - 0.5))
    assert len(collector.flight_calls()) == calls, "asked again before the retry was due"
    return retry


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
def test_a_body_malformed_at_every_attempt_is_skipped_whole_and_asked_for_again_soon(
    collector, flights, variant
):
    failures = [{"kind": "malformed", "variant": variant}] * MAX_ATTEMPTS
    if not any(
        f["estDepartureAirport"] == "LIRF" and f["firstSeen"] >= today_start() for f in flights
    ):
        # In the first minutes after midnight UTC today's range, which the collector asks
        # first, has no flight yet: let that request through (a zero-second "timeout")
        # so that the malformed answers hit yesterday's range, which has flights.
        failures.insert(0, {"kind": "timeout", "seconds": 0})
    collector.sim.inject(failures, endpoint="departure")
    first = collector.follow("LIRF")
    assert first["outcome"] == "partial"
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
    retry = assert_waits_for_its_retry(collector)
    assert "malformed body" in retry["last_error"] and retry["endpoint"] == "departure"
    assert parse_iso(retry["begin"]) == bad_begin

    # Nobody asks for a cycle: the worker asks for the range again once it is due.
    collector.sim.clear_calls()
    collector.wait_until_settled()
    again = collector.flight_calls()
    assert [(c["endpoint"], c["params"]["airport"]) for c in again] == [("departure", "LIRF")]
    # The failed range again; one of the recent past reaches further back, at no extra cost.
    assert int(again[0]["params"]["begin"]) <= bad_begin <= int(again[0]["params"]["end"])
    assert again[0]["started_at"] >= parse_iso(retry["next_attempt_at"])
    # The retry row goes when the range is stored, a moment before its cycle finishes.
    assert collector.wait_for_cycle(after=bad["started_at"])["outcome"] == "done"
    assert_complete(collector, flights)


def test_a_range_failing_again_waits_twice_as_long_each_time(collector, flights):
    collector.follow("LIRF")
    # Only today's arrivals are due; the fetch and its first retry get 503s, the next works.
    collector.sql(
        "DELETE FROM collected_days WHERE direction = 'arrival' AND day = to_timestamp(%s)::date",
        (today_start(),),
    )
    collector.sim.inject([{"status": 503}] * (2 * MAX_ATTEMPTS), endpoint="arrival")
    dc = collector.dc
    assert collector.run_cycle()["outcome"] == "partial"
    assert metric(dc, "collection_retries_waiting") == 1
    assert 0 < metric(dc, "collection_next_retry_seconds") <= RETRY_FIRST
    wait_until(lambda: retries(collector)["ranges"][0]["attempts"] == 2, timeout=CYCLE_TIMEOUT)
    (second,) = retries(collector)["ranges"]
    assert "HTTP 503" in second["last_error"]
    collector.wait_until_settled()

    arrivals = [c for c in collector.flight_calls() if c["endpoint"] == "arrival"]
    failed = [c for c in arrivals if c["injected"]]
    rounds = [failed[:MAX_ATTEMPTS], failed[MAX_ATTEMPTS:]]
    success = next(c for c in arrivals if c["id"] > failed[-1]["id"])
    assert not success["injected"]
    # Today's arrivals each time (a range of the recent past reaches back from when it is sent).
    for call in [*failed, success]:
        assert int(call["params"]["begin"]) <= today_start() <= int(call["params"]["end"])
    assert rounds[1][0]["started_at"] >= rounds[0][-1]["finished_at"] + RETRY_FIRST - 0.05
    assert success["started_at"] >= rounds[1][-1]["finished_at"] + 2 * RETRY_FIRST - 0.05
    assert metric(dc, "collection_retries_waiting") == 0
    assert metric(dc, "collection_next_retry_seconds") == 0
    assert_complete(collector, flights)


def test_a_range_waiting_for_its_retry_is_not_asked_for_by_other_cycles(collector, flights):
    # Today's and yesterday's departures failed a moment ago; the retry is an hour away.
    collector.sql(
        "INSERT INTO collection_retries VALUES ('departure', 'LIRF', to_timestamp(%s), "
        "to_timestamp(%s), 3, now(), now() + interval '1 hour', 'HTTP 503')",
        (today_start() - DAY, time.time()),
    )
    cycle = collector.follow("LIRF")
    assert cycle["outcome"] == "partial"
    # Both departure requests (the two past days, and today) overlap it.
    assert {c["endpoint"] for c in collector.flight_calls()} == {"arrival"}
    assert collector.run_cycle()["outcome"] == "partial"  # asking for a cycle changes nothing
    assert retries(collector)["waiting"] == 1

    # Once due, the worker's poll runs a cycle for it by itself.
    collector.sim.clear_calls()
    due_at = time.time()
    collector.sql("UPDATE collection_retries SET next_attempt_at = now()")
    collector.wait_until_settled()
    # The first of the two ranges stored clears the retry; the cycle stores the other after.
    assert collector.wait_for_cycle(after=due_at)["outcome"] == "done"
    assert {c["endpoint"] for c in collector.flight_calls()} == {"departure"}
    assert_complete(collector, flights)


def test_retries_the_plan_no_longer_asks_for_are_dropped_without_asking_opensky(collector):
    collector.sql(
        "INSERT INTO collection_retries VALUES ('arrival', 'LIRQ', now() - interval '1 day', "
        "now() - interval '23 hours', 1, now(), now(), 'HTTP 502')"
    )
    collector.wait_until_settled()  # nobody follows LIRQ any more
    assert collector.flight_calls() == []


def test_retries_a_cycle_could_not_reach_wait_again_instead_of_looping(collector, flights):
    collector.follow("LIRF")
    yesterday = today_start() - DAY
    collector.sql(
        "DELETE FROM collected_days WHERE direction = 'departure' AND day = to_timestamp(%s)::date",
        (yesterday,),
    )
    # The token will be refused: the cycle stops before any range, the retry is left behind.
    collector.sim.expire_tokens()
    collector.sim.inject([{"status": 401}], endpoint="token")
    asked_at = time.time()
    collector.sql(
        "INSERT INTO collection_retries VALUES ('departure', 'LIRF', to_timestamp(%s), "
        "to_timestamp(%s), 1, now(), now(), 'HTTP 503')",
        (yesterday, yesterday + DAY - 1),
    )
    assert collector.wait_for_cycle(asked_at)["outcome"] == "partial"
    (retry,) = retries(collector)["ranges"]
    assert parse_iso(retry["next_attempt_at"]) >= asked_at + RETRY_FIRST - 0.5
    token_calls = [c for c in collector.sim.calls() if c["endpoint"] == "token"]
    time.sleep(RETRY_FIRST / 2)
    assert [c for c in collector.sim.calls() if c["endpoint"] == "token"] == token_calls
    collector.wait_until_settled()


def test_a_range_the_database_refuses_is_skipped_and_the_cycle_goes_on(collector, flights):
    # A real refusal from PostgreSQL, for one flight of yesterday's LIRF departures.
    collector.sql(
        "ALTER TABLE flight_data ADD CONSTRAINT test_refuse CHECK (icao24 <> 'a00004') NOT VALID"
    )
    try:
        first = collector.follow("LIRF")
        assert first["outcome"] == "partial" and first["requests"] == 4
        stored = {f["icao24"] for f in collector.stored("LIRF")}
        assert "a00004" not in stored and {"a00002", "a00003"} <= stored
        retry = assert_waits_for_its_retry(collector)
        assert "could not be stored" in retry["last_error"]
    finally:
        collector.sql("ALTER TABLE flight_data DROP CONSTRAINT test_refuse")
    collector.sim.clear_calls()
    collector.wait_until_settled()
    assert {c["endpoint"] for c in collector.flight_calls()} == {"departure"}
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
    assert retries(collector)["waiting"] == 0, "a 429 waits for OpenSky, not for a retry"
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

"""Many airports: one global /flights/all sweep costs less and stores the same flights."""

import time

import pytest

from data_collector.collection.planning import Policy, plan_cycle, request_cost
from opensky_sim.world import AIRPORTS
from tests.integration.collector_support import DAY, as_api, keyed, today_start, without_type
from tests.integration.conftest import COLLECTOR_TEST_ENV

pytestmark = pytest.mark.local_stack

FOLLOWED = [airport.icao for airport in AIRPORTS[:20]]
TEST_POLICY = Policy(
    backfill_days=int(COLLECTOR_TEST_ENV["COLLECT_BACKFILL_DAYS"]),
    refresh_days=1,
    min_gap_seconds=3600,
    sweep=True,
)


def test_a_cycle_over_many_airports_uses_the_sweep_the_cost_model_predicts(collector):
    predicted = plan_cycle({}, FOLLOWED, now=int(time.time()), policy=TEST_POLICY)
    assert predicted.mode == "sweep" and predicted.sweep_cost < predicted.per_airport_cost

    cycle = collector.follow(*FOLLOWED)
    assert cycle["outcome"] == "done" and cycle["mode"] == "sweep"
    calls = collector.flight_calls()
    sweeps = [c for c in calls if c["endpoint"] == "all"]
    assert len(calls) == predicted.request_count == cycle["requests"]
    assert len(sweeps) == 12 * len(predicted.sweep_days)
    # Each request is priced when it is sent: a window of yesterday turns from 4 to
    # 30 credits once it starts more than 24 h ago, which may happen mid-cycle.
    for call in calls:
        begin, end = int(call["params"]["begin"]), int(call["params"]["end"])
        when = (call["started_at"], call["finished_at"])
        assert call["cost"] in {request_cost(begin, end, at) for at in when}, call
    assert_stored_as_per_airport_requests_would(collector, calls)

    collector.sim.clear_calls()
    assert collector.run_cycle()["requests"] == 0


def assert_stored_as_per_airport_requests_would(collector, calls) -> None:
    """Every followed airport holds OpenSky's flights for it over the collected window."""
    first_call = min(c["started_at"] for c in calls)
    begin = today_start() - TEST_POLICY.backfill_days * DAY
    end = int(max(c["started_at"] for c in calls))
    for airport in FOLLOWED:
        for direction, flight_type in (("arrival", "arrivals"), ("departure", "departures")):
            truth = collector.sim.ground_truth(airport, begin, end, direction)
            every = keyed([as_api(f) for f in truth])
            # Served: every flight landed before the first request; at most those landed by now.
            landed_before = keyed([as_api(f) for f in truth if f["lastSeen"] <= first_call])
            # The sweep also stores flights outside the window (from its lead-in day).
            window = collector.stored(airport, flight_type, since=begin, until=end + 1)
            stored = keyed(without_type(window))
            assert landed_before.keys() <= stored.keys() <= every.keys(), (airport, direction)
            assert all(stored[key] == every[key] for key in stored)


def test_a_sweep_that_would_lose_longer_flights_is_replaced_by_per_airport_requests(collector):
    # The forum report: /flights/all only returns flights contained in the window.
    collector.sim.set_all_semantics("contained")
    cycle = collector.follow(*FOLLOWED)
    assert cycle["outcome"] == "done" and cycle["mode"] == "per-airport"
    assert collector.dc.get("/health").json()["opensky"]["sweep_unreliable_since"] is not None

    calls = collector.flight_calls()
    # One day swept shows it; its days are asked per airport instead.
    assert len([c for c in calls if c["endpoint"] == "all"]) == 12
    assert_stored_as_per_airport_requests_would(collector, calls)
    days = TEST_POLICY.backfill_days + 1
    marks = collector.sql("SELECT count(*) FROM collected_days")
    assert marks == [(len(FOLLOWED) * 2 * days,)]

    # Every later cycle (of any process) remembers: no sweep, even with past days due.
    collector.sql("DELETE FROM collected_days WHERE day < (now() AT TIME ZONE 'UTC')::date")
    collector.sim.clear_calls()
    again = collector.run_cycle()
    assert again["mode"] == "per-airport" and again["requests"] > 0
    assert all(c["endpoint"] != "all" for c in collector.flight_calls())

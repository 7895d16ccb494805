"""The circuit breaker around OpenSky: it opens on a burst of failures, and nothing is lost.

On the collection stack, where the cool-down is 2 s (a minute by default)
and the breaker opens after its default 12 failed calls in a row: three
ranges failing all their 4 attempts.
"""

import json
import subprocess
import sys
import time

import pytest

from data_collector.config import Settings
from tests.integration.collector_support import (
    CYCLE_TIMEOUT,
    DAY,
    assert_complete,
    parse_iso,
    today_start,
)
from tests.integration.conftest import COLLECTOR_TEST_ENV
from tests.utils import create_user, metric, wait_until

pytestmark = pytest.mark.local_stack

FAILURES = Settings.model_fields["OPENSKY_BREAKER_FAILURES"].default
COOLDOWN = float(COLLECTOR_TEST_ENV["OPENSKY_BREAKER_COOLDOWN_SECONDS"])


def run_once(collector) -> dict:
    """Run one cycle in a process of its own, as ops would (``worker --once``); its result."""
    done = subprocess.run(
        [sys.executable, "-m", "data_collector.worker", "--once"],
        env=collector.stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(done.stdout.splitlines()[-1])


def breaker(collector) -> dict:
    """The ``circuit_breaker`` part of ``GET /health``."""
    return collector.dc.get("/health").json()["opensky"]["circuit_breaker"]


def test_a_burst_of_503s_opens_the_breaker_and_it_closes_once_opensky_answers(collector, flights):
    dc = collector.dc
    openings = metric(dc, "opensky_circuit_breaker_openings_total")
    stopped = metric(dc, "collection_cycles_total", outcome="circuit-open")
    collector.sim.inject([{"status": 503}] * FAILURES)
    email = create_user(collector.um)
    asked_at = time.time()
    # A threshold, so the alert window the collector computes is published.
    body = {"email": email, "airport_code": "LIRF", "high_value": 100}
    assert dc.post("/interests", json=body).status_code == 201

    # The worker collects everything by itself: the trial call after the cool-down works.
    def recovered():
        state = breaker(collector)
        return state if state["opened_at"] and state["state"] == "closed" else None

    closed = wait_until(recovered, timeout=CYCLE_TIMEOUT)
    collector.wait_until_settled()
    assert closed["failures_in_a_row"] == 0 and closed["trial_after"] is None
    assert_complete(collector, flights)

    calls = sorted(collector.flight_calls(), key=lambda call: call["started_at"])
    failed, after = calls[:FAILURES], calls[FAILURES:]
    assert all(call["status"] == 503 for call in failed)
    # Once open, nothing was asked of OpenSky until the cool-down was over.
    assert after[0]["status"] in (200, 404)
    assert after[0]["started_at"] >= failed[-1]["finished_at"] + COOLDOWN - 0.05
    opened_at = parse_iso(closed["opened_at"])
    assert failed[-1]["started_at"] <= opened_at <= after[0]["started_at"]
    assert opened_at >= asked_at
    assert metric(dc, "opensky_circuit_breaker_openings_total") == openings + 1
    assert metric(dc, "collection_cycles_total", outcome="circuit-open") == stopped + 1
    assert metric(dc, "opensky_circuit_breaker_open") == 0

    # The alert window came from collected days only: the day before yesterday, whole.
    interest = collector.interest_id(email, "LIRF")
    (event,) = collector.published("flights", interest)
    day = today_start() - 2 * DAY
    assert parse_iso(event["window"]["start"]) == day
    assert (event["arrivals"], event["departures"]) == (1, 1)


def test_an_open_breaker_holds_back_every_cycle_until_its_cool_down_then_one_trial(
    collector, flights
):
    collector.follow("LIRF")
    collector.sql("DELETE FROM collected_days WHERE day = to_timestamp(%s)::date", (today_start(),))
    # As any replica's cycle leaves it, opened just now: its cool-down is far off.
    collector.sql(
        "UPDATE collector_state SET breaker_state = 'open', breaker_failures = %s, "
        "breaker_opened_at = now() + interval '1 hour'",
        (FAILURES,),
    )
    collector.sim.clear_calls()
    # A cycle asked for waits (the worker's poll does not start it), and one run by hand
    # skips: no call to OpenSky.
    assert collector.dc.post("/collection/runs").status_code == 202
    assert run_once(collector)["outcome"] == "waiting"
    assert collector.flight_calls() == []
    assert collector.sql("SELECT count(*) FROM collection_requests WHERE NOT taken") == [(1,)]
    state = breaker(collector)
    assert state["state"] == "open" and state["failures_in_a_row"] == FAILURES
    assert parse_iso(state["trial_after"]) == pytest.approx(
        parse_iso(state["opened_at"]) + COOLDOWN, abs=0.01
    )
    assert metric(collector.dc, "opensky_circuit_breaker_open") == 1

    # The cool-down over, the cycle asked for runs by itself; its first call is the trial.
    collector.sql("UPDATE collector_state SET breaker_opened_at = now() - interval '1 minute'")
    wait_until(lambda: breaker(collector)["state"] == "closed", timeout=CYCLE_TIMEOUT)
    assert [call["status"] for call in collector.flight_calls()][:1] in ([200], [404])
    assert metric(collector.dc, "opensky_circuit_breaker_open") == 0

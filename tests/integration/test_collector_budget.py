"""The collector spends at most the day's credits, on the most-followed airports first.

OpenSky grants an account a daily quota of credits (``OPENSKY_DAILY_CREDITS``,
4,000 with credentials); a request past it is refused with a 429 for the
rest of the day. The collector counts what its requests cost per UTC day and
leaves for the next day what today's credits would not cover, so the quota
is never overrun, and the airports most users follow are collected first.
"""

import time

from data_collector.collection import cycle
from tests.integration.collector_support import DAY, iso, make_flight, today_start
from tests.utils import metric

POPULAR, QUIET, ELSEWHERE = "LIRF", "LIMC", "LIPZ"
# What is left of the day's 4,000 credits when the test starts: the popular airport's
# two directions over today and the two past days (4 + 4 + 30 + 30) and today's requests
# of the quiet one (4 + 4) fit; the quiet airport's past days (30 each) do not.
CREDITS_LEFT = 100
# Several of the worker's polls (every 0.2 s in the collection stack).
POLLS_SECONDS = 1.5


def dataset(now: int) -> list[dict]:
    """On each of the last three days, if landed: a flight each way at each followed airport."""
    flights = []
    for back in (2, 1, 0):
        first_seen = today_start() - back * DAY + 60
        if first_seen + 90 * 60 > now:
            continue
        for n, airport in enumerate((POPULAR, QUIET)):
            flights.append(make_flight(f"b{back}{n}001", airport, ELSEWHERE, first_seen))
            flights.append(make_flight(f"b{back}{n}002", ELSEWHERE, airport, first_seen + 120))
    return flights


def at(airport: str, flights: list[dict]) -> set[str]:
    ends = ("estDepartureAirport", "estArrivalAirport")
    return {f["icao24"] for f in flights if airport in (f[end] for end in ends)}


def test_a_cycle_stops_at_the_daily_quota_and_leaves_the_least_followed_airport_for_tomorrow(
    collector,
):
    flights = dataset(int(time.time()))
    collector.sim.load_dataset(flights)
    quota = 4000
    collector.sql(
        "UPDATE collector_state SET credits_day = (now() AT TIME ZONE 'UTC')::date, "
        "credits_spent = %s",
        (quota - CREDITS_LEFT,),
    )
    with collector.paused():
        asked_at = time.time()
        collector.follow_without_waiting(POPULAR, QUIET)
        collector.follow_without_waiting(POPULAR)
    cycle = collector.wait_for_cycle(asked_at)

    assert cycle["outcome"] == "partial"
    calls = collector.flight_calls()
    charged = collector.sim.credits()
    assert sum(bucket["used"] for bucket in charged.values()) <= CREDITS_LEFT
    quiet_begins = {int(c["params"]["begin"]) for c in calls if c["params"].get("airport") == QUIET}
    assert quiet_begins and min(quiet_begins) >= today_start()
    popular = {f["icao24"] for f in collector.stored(POPULAR)}
    assert popular == at(POPULAR, flights)
    quiet_past = at(QUIET, [f for f in flights if f["firstSeen"] < today_start()])
    assert quiet_past
    assert not quiet_past & {f["icao24"] for f in collector.stored(QUIET)}

    opensky = collector.dc.get("/health").json()["opensky"]
    assert opensky["over_budget_today"] is True
    assert quota - CREDITS_LEFT < opensky["credits_spent_today"] <= quota
    # What is still due waits for the next UTC day: no cycle spins on it meanwhile.
    time.sleep(POLLS_SECONDS)
    assert len(collector.flight_calls()) == len(calls)


def spent_today(collector, credits: int) -> None:
    collector.sql(
        "UPDATE collector_state SET credits_day = (now() AT TIME ZONE 'UTC')::date, "
        "credits_spent = %s",
        (credits,),
    )


def follow_with_credits_spent(collector, airport: str, spent: int) -> tuple[list, str, dict]:
    """Make a new user follow ``airport`` once ``spent`` of today's 4,000 credits are gone.

    Return the world loaded in the simulator, the user's email and the cycle that ran.
    """
    flights = dataset(int(time.time()))
    collector.sim.load_dataset(flights)
    spent_today(collector, spent)
    with collector.paused():
        asked_at = time.time()
        email = collector.follow_without_waiting(airport)
    return flights, email, collector.wait_for_cycle(asked_at)


def waits_for_credits(collector, email: str) -> dict:
    """Each followed airport and until when its collection waits for credits (None: not)."""
    listed = collector.dc.get(f"/interests/{email}").json()
    return {i["airport_code"]: i["collection_waits_for_credits_until"] for i in listed}


def test_once_the_quota_binds_a_new_airport_still_gets_what_the_rest_covers(collector):
    # 3,992 of the 4,000 credits spent, and an earlier cycle left requests for lack of them.
    collector.sql("UPDATE collector_state SET over_budget_on = (now() AT TIME ZONE 'UTC')::date")
    _flights, email, ran = follow_with_credits_spent(collector, QUIET, 4000 - 8)

    # Today's arrivals and departures (4 credits each) fit; the past days wait for tomorrow.
    assert ran["outcome"] == "partial"
    calls = collector.flight_calls()
    assert sorted((c["endpoint"], c["params"]["airport"], c["cost"]) for c in calls) == [
        ("arrival", QUIET, 4),
        ("departure", QUIET, 4),
    ]
    assert all(int(c["params"]["begin"]) >= today_start() for c in calls)
    assert collector.dc.get("/health").json()["opensky"]["credits_spent_today"] == 4000
    assert waits_for_credits(collector, email) == {QUIET: iso(today_start() + DAY)}


def test_a_budget_raised_by_a_restart_is_spent_at_once(collector, collector_app):
    flights, email, ran = follow_with_credits_spent(collector, POPULAR, 4000)
    assert ran["outcome"] == "partial"
    assert collector.flight_calls() == []
    assert not cycle.collection_pending()  # nothing fits: no cycle spins on it

    # The operator restarts the worker with a higher budget: it collects at once.
    collector_app.config["OPENSKY_DAILY_CREDITS"] = 4000 + 100
    assert cycle.collection_pending()
    client = cycle.client_from_config(collector_app.config)
    assert cycle.run_cycle(client=client).outcome == "done"
    assert {f["icao24"] for f in collector.stored(POPULAR)} == at(POPULAR, flights)
    assert not cycle.collection_pending()
    assert waits_for_credits(collector, email) == {POPULAR: None}
    # The web role, configured apart (as on Kubernetes), shows the budget the worker spends.
    assert metric(collector.dc, "collection_daily_credits") == 4000 + 100


def test_what_waits_for_credits_is_collected_when_the_next_utc_day_starts(collector):
    flights, email, ran = follow_with_credits_spent(collector, POPULAR, 4000)
    assert ran["outcome"] == "partial"
    assert waits_for_credits(collector, email) == {POPULAR: iso(today_start() + DAY)}

    # The day ends (as the collector sees it): the worker collects by itself, unasked.
    day_ended_at = time.time()
    collector.sql(
        "UPDATE collector_state SET credits_day = credits_day - 1, "
        "over_budget_on = over_budget_on - 1"
    )
    assert collector.wait_for_cycle(day_ended_at)["outcome"] == "done"
    assert {f["icao24"] for f in collector.stored(POPULAR)} == at(POPULAR, flights)
    assert waits_for_credits(collector, email) == {POPULAR: None}

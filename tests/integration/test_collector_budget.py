"""The collector spends at most the day's credits, on the most-followed airports first.

OpenSky grants an account a daily quota of credits (``OPENSKY_DAILY_CREDITS``,
4,000 with credentials); a request past it is refused with a 429 for the
rest of the day. The collector counts what its requests cost per UTC day and
leaves for the next day what today's credits would not cover, so the quota
is never overrun, and the airports most users follow are collected first.
"""

import time

from tests.integration.collector_support import DAY, make_flight, today_start

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

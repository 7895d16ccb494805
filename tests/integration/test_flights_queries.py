"""Flight queries: lists, last flight and daily average agree with what OpenSky served."""

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from common.timeutil import DAY
from data_collector import flights
from data_collector.collection import store as flight_store
from data_collector.models import db
from tests.integration.collector_support import (
    as_api,
    iso,
    make_flight,
    parse_iso,
    today_start,
    without_type,
)
from tests.integration.conftest import COLLECTOR_TEST_ENV

pytestmark = pytest.mark.local_stack

AIRPORT = "LIPZ"


def dataset():
    """Two past days at LIPZ: yesterday busy, the day before with no departures at all."""
    d0 = today_start()
    before, yesterday = d0 - 2 * DAY, d0 - DAY
    return [
        # The day before yesterday: arrivals only (no departures).
        make_flight("b00001", "LIRF", AIRPORT, before + 3600),
        make_flight("b00002", "EGLL", AIRPORT, before + 5 * 3600, minutes=150),
        # Yesterday: four departures, three arrivals (one taking off the day before).
        make_flight("b00003", AIRPORT, "LIRF", yesterday + 2 * 3600),
        make_flight("b00004", AIRPORT, "LIMC", yesterday + 6 * 3600),
        make_flight("b00005", AIRPORT, "EGLL", yesterday + 20 * 3600),
        make_flight("b00006", "LIMC", AIRPORT, yesterday - 1800, minutes=60),
        make_flight("b00007", "LIRF", AIRPORT, yesterday + 12 * 3600),
        # Back where it started, seen once: an arrival and a departure with one id and time.
        make_flight("b00009", AIRPORT, AIRPORT, yesterday + 8 * 3600, minutes=0),
        # Older than the collected window: never fetched, never counted.
        make_flight("b00008", AIRPORT, "LIRF", d0 - 4 * DAY),
    ]


@pytest.fixture
def collected(collector):
    flights = dataset()
    collector.sim.load_dataset(flights)
    assert collector.follow(AIRPORT)["outcome"] == "done"
    return flights


def test_flights_list_newest_first_by_type_with_pagination(collector, collected):
    dc = collector.dc
    arrivals = dc.get(f"/flights/{AIRPORT.lower()}?type=arrivals").json()
    assert [f["icao24"] for f in arrivals] == ["b00007", "b00009", "b00006", "b00002", "b00001"]
    assert all(f["type"] == "arrival" for f in arrivals)
    by_id = {f["icao24"]: f for f in collected}
    assert without_type(arrivals)[0] == as_api(by_id["b00007"])
    departures = dc.get(f"/flights/{AIRPORT}?type=departures").json()
    assert [f["icao24"] for f in departures] == ["b00005", "b00009", "b00004", "b00003"]

    both = dc.get(f"/flights/{AIRPORT}").json()
    times = [f["last_seen"] if f["type"] == "arrival" else f["first_seen"] for f in both]
    assert times == sorted(times, reverse=True) and len(both) == 9

    def pages(limit):
        result, response = [], dc.get(f"/flights/{AIRPORT}?limit={limit}")
        while True:
            assert response.status_code == 200
            result.append(response.json())
            if "next" not in response.links:
                return result
            response = dc.session.get(response.links["next"]["url"], timeout=10)

    # Pages of 3 end between b00009's departure and its arrival (same time, same id).
    by_three = pages(3)
    assert [(f["icao24"], f["type"]) for f in by_three[0][-1:] + by_three[1][:1]] == [
        ("b00009", "departure"),
        ("b00009", "arrival"),
    ]
    assert [len(p) for p in by_three] == [3, 3, 3]
    assert [f for page in by_three for f in page] == both
    assert [f for page in pages(1) for f in page] == both

    yesterday = today_start() - DAY
    window = dc.get(f"/flights/{AIRPORT}?since={yesterday}&until={iso(yesterday + 12 * 3600)}")
    assert {f["icao24"] for f in window.json()} == {"b00003", "b00004", "b00006", "b00009"}
    assert dc.get("/flights/LIRQ").json() == []


@pytest.mark.parametrize(
    "query",
    [
        "/flights/LIPZ?type=sideways",
        "/flights/LIPZ?since=yesterday",
        "/flights/LIPZ?since=2026-01-02&until=2026-01-01",
        "/flights/LIPZ?limit=0",
        "/flights/LIPZ?cursor=garbage",
        "/flights/ZZZZ",
        "/flights/L1",
        "/flights/last/ZZZZ",
        "/flights/average/LIPZ?days=0",
        "/flights/average/LIPZ?days=lots",
        "/flights/average/LIPZ?days=100000",
    ],
)
def test_bad_query_parameters_are_a_400(collector, query):
    response = collector.dc.get(query)
    assert response.status_code == 400, response.text
    assert "error" in response.json()


def test_last_flight_of_each_type(collector, collected):
    dc = collector.dc
    assert dc.get(f"/flights/last/{AIRPORT}").json()["icao24"] == "b00005"  # 20:00 departure
    assert dc.get(f"/flights/last/{AIRPORT}?type=arrivals").json()["icao24"] == "b00007"
    assert dc.get(f"/flights/last/{AIRPORT}?type=departures").json()["icao24"] == "b00005"
    missing = dc.get("/flights/last/LIRQ")
    assert missing.status_code == 404 and "error" in missing.json()


def recent_dataset(now: int) -> list[dict]:
    """Seven departures from LIPZ and three arrivals at it, all within the last three hours."""
    departures = [
        make_flight(f"c0000{k}", AIRPORT, "LIRF", now - 600 - 900 * k, minutes=10)
        for k in range(1, 8)
    ]
    arrivals = [
        make_flight(f"c1000{k}", "LIRF", AIRPORT, now - 3 * 3600 + 1200 * k, minutes=30)
        for k in range(1, 4)
    ]
    return departures + arrivals


def listed(collector, window: dict, flight_type: str) -> list[dict]:
    """What the list of flights serves for the average's window (every page)."""
    return collector.stored(AIRPORT, flight_type, since=window["from"], until=window["to"])


def test_the_average_of_the_last_days_counts_the_flights_of_the_last_hours(collector):
    now = int(time.time())
    collector.sim.load_dataset(recent_dataset(now))
    assert collector.follow(AIRPORT)["outcome"] == "done"

    body = collector.dc.get(f"/flights/average/{AIRPORT}?days=2").json()
    window = body["window"]
    assert window["ends_at"] == "last collection"
    # The window ends where collection has reached: the cycle that just ran.
    assert now <= parse_iso(window["to"]) <= time.time()
    assert parse_iso(window["to"]) - parse_iso(window["from"]) == 2 * DAY
    assert body["departures"] == {"flights": 7, "days_covered": 2.0, "per_day": 3.5}
    assert body["arrivals"] == {"flights": 3, "days_covered": 2.0, "per_day": 1.5}
    assert body["average_flights_per_day"] == 5.0
    assert (body["departures_per_day"], body["arrivals_per_day"]) == (3.5, 1.5)
    assert (body["days_requested"], body["days_covered"], body["coverage"]) == (2, 2.0, 1.0)
    assert len(listed(collector, window, "departures")) == 7
    assert len(listed(collector, window, "arrivals")) == 3

    # Four days back reach before the two days of backfill: only the collected part counts.
    body = collector.dc.get(f"/flights/average/{AIRPORT}?days=4").json()
    collected = parse_iso(body["window"]["to"]) - (today_start() - 2 * DAY)
    assert body["days_covered"] == round(collected / DAY, 4)
    assert body["coverage"] == round(collected / (4 * DAY), 4) < 1
    assert body["departures"]["flights"] == 7
    assert body["departures"]["per_day"] == round(7 * DAY / collected, 2)
    assert body["average_flights_per_day"] == round(
        body["departures"]["per_day"] + body["arrivals"]["per_day"], 2
    )


class Stored:
    """Flights and marks written straight into the collector's tables, as a cycle would."""

    def __init__(self, collector):
        self.collector = collector
        self.flights: list[tuple[str, int, int, str | None, str | None]] = []

    def flight(self, direction: str, moment: int, airport: str = AIRPORT) -> None:
        """Store a flight whose time at ``airport`` (arrival or departure) is ``moment``."""
        icao24 = f"d{len(self.flights):05x}"
        if direction == "arrival":
            row = (icao24, moment - 3600, moment, "LIRF", airport)
        else:
            row = (icao24, moment, moment + 3600, airport, "LIRF")
        self.flights.append(row)
        self.collector.sql(
            "INSERT INTO flight_data (icao24, first_seen, last_seen, est_departure_airport, "
            "est_arrival_airport) VALUES (%s, to_timestamp(%s), to_timestamp(%s), %s, %s)",
            row,
        )

    def both(self, *moments: int) -> None:
        """Store an arrival and a departure at each moment."""
        for moment in moments:
            self.flight("arrival", moment)
            self.flight("departure", moment)

    def mark(self, direction: str, day: int, until: int | None = None) -> None:
        """Mark ``day`` (its first second) collected up to ``until`` (default: all of it)."""
        self.collector.sql(
            "INSERT INTO collected_days VALUES (%s, %s, to_timestamp(%s)::date, "
            "to_timestamp(%s), now())",
            (AIRPORT, direction, day, day + DAY - 1 if until is None else until),
        )

    def expected(self, direction: str, window: dict) -> int:
        """How many stored flights have their time at the airport in the window."""
        start, end = parse_iso(window["from"]), parse_iso(window["to"])
        at = 2 if direction == "arrival" else 1
        column = 4 if direction == "arrival" else 3
        return sum(1 for f in self.flights if f[column] == AIRPORT and start <= f[at] < end)


def reference_instant() -> int:
    """Ten minutes ago, unless that is in the first two hours of a UTC day (then last evening)."""
    moment = int(time.time()) - 600
    if moment % DAY < 2 * 3600:
        moment = moment // DAY * DAY - 4 * 3600
    return moment


def test_the_average_counts_what_the_list_serves_for_its_window_ends_and_midnights(collector):
    stored, t = Stored(collector), reference_instant()
    day = t // DAY * DAY
    for direction in ("arrival", "departure"):
        for back in (3, 2, 1):
            stored.mark(direction, day - back * DAY)
        stored.mark(direction, day, until=t)
    # The window's ends (its start is in, its end out) and the midnights inside it, for
    # one day and for two, plus flights well inside and outside.
    stored.both(t, t + 1, t + 1 - DAY, t - DAY, t + 1 - 2 * DAY, t - 2 * DAY)
    stored.both(day, day - 1, day - DAY, day - DAY - 1, day - DAY + 7 * 3600)
    stored.flight("arrival", day - DAY + 12 * 3600)

    for days in (1, 2, 3):
        body = collector.dc.get(f"/flights/average/{AIRPORT}?days={days}").json()
        window = body["window"]
        assert window == {
            "from": iso(t + 1 - days * DAY),
            "to": iso(t + 1),
            "ends_at": "last collection",
        }
        assert (body["days_covered"], body["coverage"]) == (float(days), 1.0)
        for direction, flight_type in (("arrival", "arrivals"), ("departure", "departures")):
            counted = body[flight_type]["flights"]
            assert counted == stored.expected(direction, window), (days, direction)
            assert counted == len(listed(collector, window, flight_type)), (days, direction)
            assert body[flight_type]["per_day"] == round(counted / days, 2)
    one_day = collector.dc.get(f"/flights/average/{AIRPORT}?days=1").json()
    # t, t + 1 - DAY, midnight and the second before it; yesterday's morning flights if
    # the window reaches back to them.
    in_window = t + 1 - DAY
    assert one_day["departures"]["flights"] == 4 + (day - DAY + 7 * 3600 >= in_window)
    assert one_day["arrivals"]["flights"] == (
        4 + (day - DAY + 7 * 3600 >= in_window) + (day - DAY + 12 * 3600 >= in_window)
    )


def test_a_gap_in_the_window_is_left_out_of_the_count_and_of_the_days(collector):
    stored, t = Stored(collector), reference_instant()
    day = t // DAY * DAY
    # Arrivals: the day before yesterday was never collected (a failure); departures are
    # complete but collected only up to an hour before the arrivals.
    for back in (3, 1):
        stored.mark("arrival", day - back * DAY)
    stored.mark("arrival", day, until=t)
    for back in (3, 2, 1):
        stored.mark("departure", day - back * DAY)
    stored.mark("departure", day, until=t - 3600)
    end = t - 3600 + 1
    stored.both(end - 1, end, end - 3 * DAY, day - 3 * DAY + 3600)
    stored.both(day - DAY + 3600, day - 2 * DAY + 3600, day - 2 * DAY + 7200)

    body = collector.dc.get(f"/flights/average/{AIRPORT}?days=3").json()
    window = body["window"]
    assert window == {"from": iso(end - 3 * DAY), "to": iso(end), "ends_at": "last collection"}
    # The two arrivals of the day nobody collected are stored (from another airport's
    # departures, say), listed, and not counted.
    assert len(listed(collector, window, "arrivals")) == stored.expected("arrival", window)
    assert body["arrivals"]["flights"] == stored.expected("arrival", window) - 2
    assert body["arrivals"]["days_covered"] == 2.0
    assert body["arrivals"]["per_day"] == round(body["arrivals"]["flights"] / 2, 2)
    assert body["departures"]["flights"] == len(listed(collector, window, "departures"))
    assert body["departures"]["days_covered"] == 3.0
    assert (body["days_covered"], body["coverage"]) == (2.0, round(2 / 3, 4))
    assert body["average_flights_per_day"] == round(
        body["arrivals"]["per_day"] + body["departures"]["per_day"], 2
    )

    only = collector.dc.get(f"/flights/average/{AIRPORT}?days=3&type=departures").json()
    # Departures alone: their own end, a whole window.
    assert only["window"]["to"] == iso(end) and only["coverage"] == 1.0
    assert "arrivals" not in only and "arrivals_per_day" not in only
    assert only["average_flights_per_day"] == only["departures"]["per_day"]


def test_an_average_with_nothing_collected_says_so(collector):
    before = time.time()
    body = collector.dc.get("/flights/average/LIRQ").json()
    assert body["window"]["ends_at"] == "now"
    assert before <= parse_iso(body["window"]["to"]) <= time.time()
    assert (body["days_requested"], body["days_covered"], body["coverage"]) == (7, 0.0, 0.0)
    assert body["average_flights_per_day"] is None
    assert body["arrivals"] == {"flights": 0, "days_covered": 0.0, "per_day": None}
    assert body["departures_per_day"] is None


def test_the_statements_the_service_sends_use_the_indexes_on_a_large_table(collector_app):
    """EXPLAIN what the query functions send, on 100,000 seeded flights (rolled back)."""
    db.session.execute(
        text(
            "INSERT INTO flight_data (icao24, first_seen, last_seen, est_departure_airport, "
            "est_arrival_airport) SELECT to_hex(n), now() - n * interval '10 seconds', "
            "now() - n * interval '10 seconds' + interval '2 hours', "
            "(ARRAY['LIRF','LIMC','EGLL','EDDF','LFPG'])[1 + n % 5], "
            "(ARRAY['LIMC','EGLL','EDDF','LFPG','LIRF'])[1 + n % 5] "
            "FROM generate_series(1, 100000) AS n"
        )
    )
    # A week and a half of marks: the average reads whole days from the day counts and
    # the parts of days at both ends of its window from the flights.
    db.session.execute(
        text(
            "INSERT INTO collected_days SELECT 'LIRF', direction, day, "
            "least(day + interval '1 day' - interval '1 second', now() - interval '1 minute'), "
            "now() FROM unnest(ARRAY['arrival', 'departure']) AS direction, "
            "generate_series(current_date - 10, current_date, interval '1 day') AS day"
        )
    )
    db.session.execute(text("ANALYZE flight_data"))
    sent = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        if "flight_data" in statement or "flight_day_counts" in statement:
            sent.append((statement, parameters))

    # A user following two busy airports and a quiet one (GET /flights?email=): a quiet
    # airport read by time across the whole table would cost the table's size.
    db.session.execute(
        text(
            "INSERT INTO flight_data (icao24, first_seen, last_seen, est_departure_airport, "
            "est_arrival_airport) SELECT to_hex(n), now() - n * interval '1 hour', "
            "now() - n * interval '1 hour' + interval '1 hour', "
            "(ARRAY['LIRZ', 'LIRF'])[1 + n % 2], (ARRAY['LIRF', 'LIRZ'])[1 + n % 2] "
            "FROM generate_series(1000001, 1000040) AS n"
        )
    )
    db.session.execute(
        text(
            "INSERT INTO user_interests (user_email, airport_code) SELECT 'plans@example.com', "
            "unnest(ARRAY['LIRF', 'EGLL', 'LIRZ'])"
        )
    )
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        both = ("arrival", "departure")
        for directions in (("arrival",), ("departure",), both):
            page = flights.list_flights(airport="LIRF", directions=directions, limit=101)
            after = flights.FlightCursor.from_key(flights.FlightCursor.key_of(page[-1]))
            flights.list_flights(airport="LIRF", directions=directions, after=after, limit=101)
        for email in ("plans@example.com", None):
            page = flights.list_airport_flights(email=email, directions=both, limit=101)
            key = flights.AirportFlightCursor.key_of(page[-1])
            after = flights.AirportFlightCursor.from_key(key)
            flights.list_airport_flights(email=email, directions=both, after=after, limit=101)
        flights.average_flights(airport="LIRF", days=7, directions=both)
        flight_store.delete_expired(retention_days=30)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        plans = [
            "\n".join(db.session.connection().exec_driver_sql("EXPLAIN " + sql, params).scalars())
            for sql, params in sent
        ]
        db.session.rollback()
    # Six pages of an airport, four of several (a user's, everyone's), the average's count
    # (whole days from the day counts, the parts of days at the window's ends from the
    # indexes) and the retention's two deletes.
    assert len(plans) == 13
    user_pages = [plan for plan, (sql, _) in zip(plans, sent, strict=True) if "airport_0" in sql]
    assert len(user_pages) == 2
    for plan in user_pages:
        # One index range scan per followed airport and direction, each with its LIMIT
        # (busy airports may be read by time, a fifth of the rows being theirs); the quiet
        # airport by its own index.
        assert plan.count("->  Limit") == 1 + 6, plan
        assert "ix_flight_data_arrival" in plan and "ix_flight_data_departure" in plan, plan
    everyone = [
        plan
        for plan, (sql, _) in zip(plans, sent, strict=True)
        if "merged.airport" in sql and "airport_0" not in sql
    ]
    assert len(everyone) == 2
    for plan in everyone:
        assert "ix_flight_data_last_seen" in plan and "ix_flight_data_first_seen" in plan, plan
    (average,) = [
        plan
        for plan, (sql, _) in zip(plans, sent, strict=True)
        if sql.startswith("SELECT") and "flight_day_counts" in sql
    ]
    # One row per airport, direction and day (its primary key, or a scan while it is tiny).
    assert "on flight_day_counts" in average, average
    # By the airport's index or by time's (the planner's pick on this data, where every
    # airport has a fifth of the flights): a range of the window's ends either way, as
    # long whatever the table's size.
    assert "ix_flight_data_arrival" in average or "ix_flight_data_last_seen" in average, average
    assert "ix_flight_data_departure" in average or "ix_flight_data_first_seen" in average, average
    for plan in plans:
        assert "Seq Scan on flight_data" not in plan, plan
    used = "\n".join(plans)
    for index in (
        "ix_flight_data_departure",
        "ix_flight_data_arrival",
        "ix_flight_data_last_seen",
        "ix_flight_data_first_seen",
    ):
        assert index in used, used


def test_the_oldest_day_kept_by_retention_keeps_all_its_flights(collector):
    """The average over RETENTION_DAYS counts the oldest day whole, or not at all."""
    retention = int(COLLECTOR_TEST_ENV["RETENTION_DAYS"])
    oldest = today_start() - retention * DAY
    for day, icao24s in ((oldest - DAY, ["e00001"]), (oldest, ["e00002", "e00003"])):
        collector.sql(
            "INSERT INTO collected_days VALUES (%s, 'departure', to_timestamp(%s)::date, "
            "to_timestamp(%s), now())",
            (AIRPORT, day, day + DAY - 1),
        )
        for offset, icao24 in zip((30, DAY - 3600), icao24s, strict=False):
            collector.sql(
                "INSERT INTO flight_data (icao24, first_seen, last_seen, est_departure_airport) "
                "VALUES (%s, to_timestamp(%s), to_timestamp(%s), %s)",
                (icao24, day + offset, day + offset + 60, AIRPORT),
            )
    collector.run_cycle()  # retention runs at the end of the cycle

    body = collector.dc.get(f"/flights/average/{AIRPORT}?days={retention}&type=departures").json()
    assert body["days_covered"] == 1 and body["departures_per_day"] == 2.0
    oldest_day = datetime.fromtimestamp(oldest, UTC).date()
    assert collector.sql("SELECT min(day) FROM collected_days") == [(oldest_day,)]
    stored = collector.sql("SELECT icao24 FROM flight_data ORDER BY 1")
    assert stored == [("e00002",), ("e00003",)]

"""Flight queries: lists, last flight and daily average agree with what OpenSky served."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text

from data_collector import flight_store, flights
from data_collector.models import db
from data_collector.planning import DAY
from tests.integration.collector_support import (
    as_api,
    iso,
    make_flight,
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


@pytest.mark.parametrize(
    ("days", "covered", "arrivals", "departures"),
    [
        (1, 1, 3.0, 4.0),  # yesterday only
        (2, 2, 2.5, 2.0),  # with the day that had no departures
        (5, 2, 2.5, 2.0),  # older days were never collected: not counted as quiet days
    ],
)
def test_average_counts_only_collected_days(
    collector, collected, days, covered, arrivals, departures
):
    body = collector.dc.get(f"/flights/average/{AIRPORT}?days={days}").json()
    assert body["days_requested"] == days and body["days_covered"] == covered
    assert body["window"] == {"from": iso(today_start() - days * DAY), "to": iso(today_start())}
    assert body["arrivals_per_day"] == arrivals
    assert body["departures_per_day"] == departures
    assert body["average_flights_per_day"] == arrivals + departures

    only = collector.dc.get(f"/flights/average/{AIRPORT}?days={days}&type=departures").json()
    assert only["average_flights_per_day"] == departures and "arrivals_per_day" not in only


def test_average_without_collected_days_says_so(collector):
    body = collector.dc.get("/flights/average/LIRQ").json()
    assert body["days_requested"] == 7 and body["days_covered"] == 0
    assert body["average_flights_per_day"] is None


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
    db.session.execute(text("ANALYZE flight_data"))
    sent = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        if "flight_data" in statement or "flight_day_counts" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        both = ("arrival", "departure")
        for directions in (("arrival",), ("departure",), both):
            page = flights.list_flights(airport="LIRF", directions=directions, limit=101)
            after = flights.FlightCursor.from_key(flights.FlightCursor.key_of(page[-1]))
            flights.list_flights(airport="LIRF", directions=directions, after=after, limit=101)
        flights.average_flights(airport="LIRF", days=7, directions=both)
        flight_store.delete_expired(retention_days=30)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        plans = [
            "\n".join(db.session.connection().exec_driver_sql("EXPLAIN " + sql, params).scalars())
            for sql, params in sent
        ]
        db.session.rollback()
    # Six pages, the average (from the day counts, never a scan of the flights) and the
    # retention's two deletes.
    assert len(plans) == 9
    average = [sql for sql, _ in sent if "flight_day_counts" in sql and "SELECT" in sql]
    assert len(average) == 1 and "flight_data" not in average[0]
    for plan in plans:
        assert "Seq Scan on flight_data" not in plan, plan
    used = "\n".join(plans)
    for index in ("ix_flight_data_departure", "ix_flight_data_arrival", "ix_flight_data_last_seen"):
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

"""The bulk store of flights: exact values, nothing written for a re-fetch, exact counts."""

import psycopg2
import pytest

from data_collector.collection import store as flight_store
from data_collector.collection.opensky import parse_flight
from data_collector.models import db
from tests.integration.collector_support import make_flight, today_start

# Printable ASCII that COPY's text format, SQL quoting or JSON would read as syntax.
AWKWARD_CALLSIGNS = ["A\\B\\N", "\\t\\n", "O'N\"%s", "a b;--", "\\.", "\\"]


def stored(collector, *, icao24_prefix: str = "") -> dict:
    rows = collector.sql(
        "SELECT icao24, callsign, est_arrival_airport, xmin::text FROM flight_data "
        "WHERE icao24 LIKE %s ORDER BY icao24",
        (icao24_prefix + "%",),
    )
    return {icao24: (callsign, arrival, xmin) for icao24, callsign, arrival, xmin in rows}


def counts(collector) -> list[tuple]:
    return collector.sql(
        "SELECT airport_code, direction, day, flights FROM flight_day_counts "
        "WHERE flights <> 0 ORDER BY 1, 2, 3"
    )


def recounted(collector) -> list[tuple]:
    """The day counts computed from the flights themselves."""
    return collector.sql(
        "SELECT airport, direction, day, count(*) FROM ("
        " SELECT est_arrival_airport, 'arrival', (last_seen AT TIME ZONE 'UTC')::date"
        " FROM flight_data WHERE est_arrival_airport IS NOT NULL"
        " UNION ALL SELECT est_departure_airport, 'departure',"
        " (first_seen AT TIME ZONE 'UTC')::date"
        " FROM flight_data WHERE est_departure_airport IS NOT NULL"
        ") AS f (airport, direction, day) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )


def store(flights: list[dict]) -> int:
    given = flight_store.upsert_flights([parse_flight(f, i) for i, f in enumerate(flights)])
    db.session.commit()
    return given


def test_awkward_callsigns_are_stored_exactly(collector, collector_app):
    start = today_start() - 86400
    flights = [
        dict(make_flight(f"c0000{i}", "LIRF", "EGLL", start + i * 600), callsign=callsign)
        for i, callsign in enumerate(AWKWARD_CALLSIGNS)
    ]
    flights.append(dict(make_flight("c00009", None, "EGLL", start), callsign=None))
    store(flights)
    rows = stored(collector, icao24_prefix="c0000")
    assert [rows[f"c0000{i}"][0] for i in range(len(AWKWARD_CALLSIGNS))] == AWKWARD_CALLSIGNS
    assert rows["c00009"][:2] == (None, "EGLL")
    assert collector.sql("SELECT count(*) FROM flight_data_incoming") == [(0,)]


def test_refetching_writes_nothing_and_an_update_moves_the_counts(collector, collector_app):
    start = today_start() - 2 * 86400
    flights = [make_flight(f"d{i:05x}", "LIRF", "EGLL", start + i * 97) for i in range(2_500)]
    assert store(flights) == 2_500
    before, counted = stored(collector), counts(collector)
    assert counted == recounted(collector) and sum(n for *_, n in counted) == 5_000

    store(flights)  # the same answer again: not a row rewritten, not a count moved
    assert stored(collector) == before and counts(collector) == counted

    # The arrival OpenSky filled in later, and one flight given twice in one answer.
    changed = dict(flights[7], estArrivalAirport="LIMC")
    store([*flights, changed, dict(changed, callsign="LAST")])
    after = stored(collector)
    assert after["d00007"][:2] == ("LAST", "LIMC") and after["d00007"][2] != before["d00007"][2]
    assert {k: v for k, v in after.items() if k != "d00007"} == {
        k: v for k, v in before.items() if k != "d00007"
    }
    assert counts(collector) == recounted(collector)
    assert len(stored(collector)) == 2_500


def test_a_range_larger_than_one_statement_is_stored_whole(collector, collector_app, monkeypatch):
    monkeypatch.setattr(flight_store, "UPSERT_ROWS_PER_STATEMENT", 300)
    start = today_start() - 86400
    flights = [make_flight(f"e{i:05x}", "LIPZ", "LIRF", start + i * 31) for i in range(1_000)]
    assert store(flights) == 1_000
    assert len(stored(collector, icao24_prefix="e")) == 1_000
    assert counts(collector) == recounted(collector)


def test_a_refused_range_leaves_nothing_behind(collector, collector_app):
    start = today_start() - 86400
    good = parse_flight(make_flight("f00001", "LIRF", "EGLL", start))
    too_long = dict(parse_flight(make_flight("f00002", "LIRF", "EGLL", start)), callsign="X" * 9)
    with pytest.raises(psycopg2.DataError):
        flight_store.upsert_flights([good, too_long])
    db.session.rollback()
    assert stored(collector, icao24_prefix="f") == {}
    assert collector.sql("SELECT count(*) FROM flight_data_incoming") == [(0,)]
    store([make_flight("f00001", "LIRF", "EGLL", start)])
    assert list(stored(collector, icao24_prefix="f")) == ["f00001"]

"""GET /flights: the flights at every airport a user follows (or at all), in one list."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from common.web.pagination import encode_cursor
from data_collector import flights
from data_collector.models import db
from tests.integration.collector_support import make_flight, parse_iso, today_start
from tests.utils import create_user

pytestmark = pytest.mark.local_stack

DAY = 86400
FOLLOWED = ("LIPZ", "LIRF")


def dataset():
    """Flights at LIPZ, LIRF and LIMC yesterday, some between two of them."""
    y = today_start() - DAY
    return [
        make_flight("f00001", "LIPZ", "LIRF", y + 3600),  # between the two followed
        make_flight("f00002", "LIRF", "LIPZ", y + 2 * 3600),  # and back
        make_flight("f00003", "EGLL", "LIPZ", y + 3 * 3600),
        make_flight("f00004", "LIRF", "EGLL", y + 4 * 3600),
        make_flight("f00005", "LIMC", "EGLL", y + 5 * 3600),  # not at a followed airport
        make_flight("f00006", "LIPZ", "LIPZ", y + 6 * 3600, minutes=0),  # back where it began
        make_flight("f00007", "EDDF", "LIRF", y + 7 * 3600),
        make_flight("f00008", "LIRF", "LIMC", y + 8 * 3600),
    ]


@pytest.fixture
def user(collector):
    """A user following LIPZ and LIRF, another following LIMC, everything collected."""
    collector.sim.load_dataset(dataset())
    with collector.paused():
        email = collector.follow_without_waiting(*FOLLOWED)
        collector.follow_without_waiting("LIMC")
    collector.run_cycle()
    return email


def pages(collector, path: str, **params: str) -> list[list[dict]]:
    """Every page of a list, following the Link header."""
    result, response = [], collector.dc.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        result.append(response.json())
        if "next" not in response.links:
            return result
        response = collector.dc.session.get(response.links["next"]["url"], timeout=10)


def event_time(item: dict) -> str:
    return item["last_seen"] if item["type"] == "arrival" else item["first_seen"]


def per_airport(collector, airports, **params: str) -> list[tuple]:
    """What /flights/<airport> lists for each airport, as (icao24, airport, type)."""
    return sorted(
        (item["icao24"], airport, item["type"])
        for airport in airports
        for page in pages(collector, f"/flights/{airport}", **params)
        for item in page
    )


def test_a_user_s_flights_are_those_of_each_followed_airport_in_one_list(collector, user):
    (items,) = pages(collector, "/flights", email=user.upper())
    assert [event_time(f) for f in items] == sorted(map(event_time, items), reverse=True)
    assert sorted((f["icao24"], f["airport"], f["type"]) for f in items) == per_airport(
        collector, FOLLOWED
    )
    # A flight between two followed airports appears once for each, with its role there.
    roles = {(f["airport"], f["type"]) for f in items if f["icao24"] == "f00001"}
    assert roles == {("LIPZ", "departure"), ("LIRF", "arrival")}
    assert not [f for f in items if f["icao24"] == "f00005"]
    assert {f["airport"] for f in items} == set(FOLLOWED)
    # The same item as the airport's own list, plus the airport it belongs to.
    lirf = collector.dc.get("/flights/LIRF", params={"type": "arrivals"}).json()
    expected = {**lirf[0], "airport": "LIRF"}
    assert next(f for f in items if f["airport"] == "LIRF" and f["type"] == "arrival") == expected

    for limit in ("1", "2", "3"):
        paged = pages(collector, "/flights", email=user, limit=limit)
        assert [f for page in paged for f in page] == items, limit
        assert all(len(page) == int(limit) for page in paged[:-1])

    y = today_start() - DAY
    window = {"since": str(y + 2 * 3600), "until": str(y + 7 * 3600)}
    for flight_type in ("arrivals", "departures"):
        filtered = [
            f
            for page in pages(collector, "/flights", email=user, type=flight_type, **window)
            for f in page
        ]
        assert sorted((f["icao24"], f["airport"], f["type"]) for f in filtered) == per_airport(
            collector, FOLLOWED, type=flight_type, **window
        )


def test_without_an_email_every_stored_flight_is_listed_at_each_of_its_airports(collector, user):
    everything = [f for page in pages(collector, "/flights", limit="4") for f in page]
    airports = {
        a for f in everything for a in (f["est_departure_airport"], f["est_arrival_airport"]) if a
    }
    assert sorted((f["icao24"], f["airport"], f["type"]) for f in everything) == per_airport(
        collector, sorted(airports)
    )
    assert [event_time(f) for f in everything] == sorted(map(event_time, everything), reverse=True)
    assert {f["airport"] for f in everything if f["icao24"] == "f00005"} == {"LIMC", "EGLL"}


def test_an_airport_code_sent_with_spaces_around_it_pages_through_that_airport(collector, user):
    # The next page's Link repeats the path as sent: a newline, a tab or a non-Latin-1
    # space in it must not break the header.
    listed = [f["icao24"] for page in pages(collector, "/flights/LIRF", limit="2") for f in page]
    for spelling in ("LIRF%0A", "%20LIRF%09", "lirf%E2%80%A8"):
        spelled = pages(collector, f"/flights/{spelling}", limit="2")
        assert len(spelled) > 1, spelling
        assert [f["icao24"] for page in spelled for f in page] == listed, spelling


def test_errors_and_empty_lists(collector, user):
    dc = collector.dc
    unknown = dc.get("/flights", params={"email": "nobody.at.all@example.com"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "User not found"
    bad = dc.get("/flights", params={"email": "not-an-email"})
    assert bad.status_code == 400 and "email" in bad.json()["details"]
    assert dc.get("/flights", params={"email": ""}).status_code == 400
    nobody_followed = create_user(collector.um)
    assert dc.get("/flights", params={"email": nobody_followed}).json() == []
    for params in (
        {"email": user, "type": "sideways"},
        {"email": user, "limit": "0"},
        {"email": user, "since": "2026-01-02", "until": "2026-01-01"},
        # A cursor of /flights/<airport> is not one of this list.
        {"cursor": encode_cursor(["2026-01-01T00:00:00+00:00", 1, "arrival"])},
        {"cursor": encode_cursor(["2026-01-01T00:00:00+00:00", 1, "L" * 9, "arrival"])},
        {"cursor": encode_cursor(["2026-01-01T00:00:00+00:00", True, "LIRF", "arrival"])},
    ):
        response = dc.get("/flights", params=params)
        assert response.status_code == 400, (params, response.text)
        assert "error" in response.json()


def test_pages_split_ties_across_many_airports_without_losing_or_repeating(collector_app):
    """Flights at one second at six followed airports, both ways: every page size agrees."""
    airports = ("XTA1", "XTA2", "XTA3", "XTA4", "XTA5", "XTA6")
    moment = datetime(2026, 1, 1, 12, tzinfo=UTC)
    flights_sql = (
        "INSERT INTO flight_data (icao24, first_seen, last_seen, est_departure_airport, "
        "est_arrival_airport) VALUES (:icao24, :at, :at, :origin, :destination)"
    )
    for n in range(24):
        # Seen once (first_seen = last_seen): a flight between two followed airports ties with
        # itself on time and id; one back where it began, on time, id and airport too.
        origin = airports[n % 6]
        destination = origin if n % 5 == 0 else airports[(n + 1 + n // 6) % 6]
        at = moment - timedelta(hours=n // 8)
        db.session.execute(
            text(flights_sql),
            {"icao24": f"t{n:05d}", "at": at, "origin": origin, "destination": destination},
        )
    db.session.execute(
        text("INSERT INTO user_interests (user_email, airport_code) VALUES (:e, :a)"),
        [{"e": "ties@example.com", "a": airport} for airport in airports],
    )
    both = ("arrival", "departure")
    expected = flights.list_airport_flights(email="ties@example.com", directions=both, limit=1000)
    keys = [flights.AirportFlightCursor.key_of(row) for row in expected]
    # Each flight once per followed airport and direction it has, newest first, then by
    # id, airport and direction, all descending.
    assert len(keys) == 48
    assert keys == sorted(keys, key=lambda k: (parse_iso(k[0]), k[1], k[2], k[3]), reverse=True)
    for row in expected:
        item = json.loads(row.item)
        assert (item["airport"], item["type"]) == (row.airport, row.direction)
    for limit in range(1, 8):
        served, after = [], None
        while True:
            page = flights.list_airport_flights(
                email="ties@example.com", directions=both, after=after, limit=limit + 1
            )
            served += page[:limit]
            if len(page) <= limit:
                break
            after = flights.AirportFlightCursor.from_key(
                flights.AirportFlightCursor.key_of(page[limit - 1])
            )
        assert [row.item for row in served] == [row.item for row in expected], limit
    db.session.rollback()

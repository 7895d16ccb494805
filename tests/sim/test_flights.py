"""What the flights endpoints answer: parameter checks, shapes, semantics, consistency."""

import re
import time

import pytest

from opensky_sim import Settings, create_app
from opensky_sim.world import ABSENT_AIRPORTS, AIRPORTS, FLIGHT_FIELDS

from .helpers import DAY, day_start, flights, ground_truth

B = day_start(3)


@pytest.mark.parametrize(
    ("direction", "params"),
    [
        ("arrival", {"begin": B, "end": B + 3600}),
        ("arrival", {"airport": "LIRF", "end": B + 3600}),
        ("arrival", {"airport": "LIRF", "begin": B}),
        ("departure", {"airport": "LIRF", "begin": "yesterday", "end": B + 3600}),
        ("departure", {"airport": "LIRF", "begin": B, "end": f"{B + 3600}.5"}),
        ("departure", {"airport": "LIRF", "begin": -5, "end": B}),
        ("departure", {"airport": "LIRF", "begin": B, "end": B}),
        ("departure", {"airport": "LIRF", "begin": B, "end": B - 1}),
        ("arrival", {"airport": "LIRF", "begin": B, "end": B + 2 * DAY + 1}),
        ("departure", {"airport": "LIRF", "begin": B, "end": B + 2 * DAY + 1}),
        ("all", {"begin": B, "end": B + 7201}),
        ("all", {"end": B + 3600}),
        ("departure", {"airport": "LIR", "begin": B, "end": B + 3600}),
        ("departure", {"airport": "LIRFX", "begin": B, "end": B + 3600}),
        ("departure", {"airport": "LI-F", "begin": B, "end": B + 3600}),
    ],
)
def test_bad_parameters_get_400_with_text_and_no_charge(client, direction, params):
    response = client.get(f"/api/flights/{direction}", query_string=params)

    assert response.status_code == 400
    assert response.get_data(as_text=True)
    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 0


@pytest.mark.parametrize(
    ("direction", "airport", "length"), [("arrival", "EGLL", 2 * DAY), ("all", None, 7200)]
)
def test_longest_allowed_interval_is_accepted(client, direction, airport, length):
    assert flights(client, direction, B, B + length, airport).status_code == 200


def test_no_flights_is_404_with_empty_body_but_still_charged(client):
    response = flights(client, "arrival", B, B + DAY, ABSENT_AIRPORTS[0])

    assert response.status_code == 404
    assert response.data == b""
    assert response.headers["Content-Length"] == "0"
    assert response.headers["X-Rate-Limit-Remaining"] == "370"


def test_answer_has_opensky_fields_sorted_by_first_seen(client):
    response = flights(client, "departure", B, B + DAY, "EDDF")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    answer = response.get_json()
    assert 50 < len(answer) < 140
    first_seen = [f["firstSeen"] for f in answer]
    assert first_seen == sorted(first_seen)
    for item in answer:
        assert list(item) == list(FLIGHT_FIELDS)
        assert re.fullmatch(r"[0-9a-f]{6}", item["icao24"])
        assert item["callsign"] is None or re.fullmatch(r"[A-Z]{3}\d{1,4} *", item["callsign"])
        assert item["callsign"] is None or len(item["callsign"]) == 8
        assert item["estDepartureAirport"] == "EDDF"
        assert B <= item["firstSeen"] <= B + DAY
        assert 1800 <= item["lastSeen"] - item["firstSeen"] <= 13 * 3600


def test_airport_code_is_case_insensitive(client):
    upper = flights(client, "departure", B, B + 3 * 3600, "LIRF")
    lower = flights(client, "departure", B, B + 3 * 3600, "lirf")

    assert upper.get_json() == lower.get_json()


def test_a_departure_shows_up_in_arrivals_and_all(client):
    departures = flights(client, "departure", B, B + DAY, "LIRF").get_json()
    flight = next(f for f in departures if f["estArrivalAirport"])

    arrivals = flights(
        client,
        "arrival",
        flight["lastSeen"] - 60,
        flight["lastSeen"] + 60,
        flight["estArrivalAirport"],
    ).get_json()
    everything = flights(
        client, "all", flight["firstSeen"] - 60, flight["firstSeen"] + 60
    ).get_json()

    assert flight in arrivals
    assert flight in everything


def test_bounds_are_inclusive(client):
    flight = flights(client, "departure", B, B + DAY, "EGLL").get_json()[0]
    fs, ls = flight["firstSeen"], flight["lastSeen"]

    assert flight in flights(client, "departure", fs, fs + 10, "EGLL").get_json()
    assert flight in flights(client, "departure", fs - 10, fs, "EGLL").get_json()
    after = flights(client, "departure", fs + 1, fs + 10, "EGLL")
    assert after.status_code == 404 or flight not in after.get_json()
    arrival = flight["estArrivalAirport"]
    assert flight in flights(client, "arrival", ls, ls + 10, arrival).get_json()
    assert flight in flights(client, "arrival", ls - 10, ls, arrival).get_json()


def test_arrivals_include_flights_that_departed_the_day_before(client):
    overnight = next(
        f
        for f in ground_truth(client, "all", B - DAY, B - 1)
        if f["lastSeen"] >= B and f["estArrivalAirport"]
    )

    arrivals = flights(client, "arrival", B, B + DAY, overnight["estArrivalAirport"]).get_json()

    assert overnight in arrivals


def test_quiet_airports_have_days_without_flights(client):
    quiet = AIRPORTS[-1].icao
    empty_day = next(
        day
        for day in range(B - 30 * DAY, B, DAY)
        if not ground_truth(client, "departure", day, day + DAY - 1, quiet)
    )

    assert flights(client, "departure", empty_day, empty_day + DAY - 1, quiet).status_code == 404


def test_absent_airports_never_appear(client):
    everything = ground_truth(client, "all", B, B + DAY)

    airports = {f["estDepartureAirport"] for f in everything}
    airports |= {f["estArrivalAirport"] for f in everything}
    assert airports.isdisjoint(ABSENT_AIRPORTS)
    assert None in airports


def test_flights_exist_only_once_landed_even_if_the_window_reaches_the_future(client):
    now = int(time.time())

    landed = flights(client, "departure", now - DAY, now + 3600, "EGLL").get_json()
    answered_at = time.time()
    client.put("/_sim/clock", json={"offset_seconds": 13 * 3600})
    later = flights(client, "departure", now - DAY, now + 3600, "EGLL").get_json()

    assert landed
    assert all(f["lastSeen"] <= answered_at for f in landed)
    assert len(later) > len(landed)
    assert all(f in later for f in landed)


def test_same_seed_gives_the_same_world_in_another_instance():
    answers = [
        flights(create_app(Settings(seed=seed)).test_client(), "arrival", B, B + DAY, "LIRF")
        for seed in (7, 7, 8)
    ]

    assert answers[0].get_json() == answers[1].get_json()
    assert answers[0].get_json() != answers[2].get_json()


def test_density_scales_traffic():
    def count(density):
        client = create_app(Settings(density=density)).test_client()
        return len(ground_truth(client, "departure", B, B + DAY - 1, "EGLL"))

    assert count(0.1) < count(1.0) < count(3.0)


def test_flight_identity_is_unique_across_the_world(client):
    everything = ground_truth(client, "all", B, B + 3 * DAY)

    assert len({(f["icao24"], f["firstSeen"]) for f in everything}) == len(everything)

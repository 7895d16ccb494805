"""The OpenSky client refuses values it could not store and retries broken or malformed bodies."""

import json

import pytest
import requests
from prometheus_client import REGISTRY

from data_collector.collection.opensky import (
    MalformedResponseError,
    OpenSkyClient,
    UnavailableError,
    parse_flight,
)
from opensky_sim.simulator import _GOOD_FLIGHT, MALFORMED_FLIGHTS, OUT_OF_RANGE_VALUES


def test_a_well_formed_flight_becomes_a_row():
    row = parse_flight(dict(_GOOD_FLIGHT, icao24=" 4B1805 "))
    assert row["icao24"] == "4b1805" and row["callsign"] == "SWR1234"
    assert row["last_seen"].timestamp() - row["first_seen"].timestamp() == 3600


@pytest.mark.parametrize("spoiled", OUT_OF_RANGE_VALUES, ids=lambda v: next(iter(v)))
def test_a_value_no_column_can_hold_makes_the_flight_malformed(spoiled):
    with pytest.raises(MalformedResponseError):
        parse_flight(dict(_GOOD_FLIGHT, **spoiled))


@pytest.mark.parametrize(
    "spoiled",
    [
        {"arrivalAirportCandidatesCount": -(2**31) - 1},
        {"firstSeen": -1},
        {"firstSeen": True},
        {"icao24": "4b180"},
        {"callsign": "AZA\u00e912"},
        {"estDepartureAirport": "LI\nRF"},
    ],
)
def test_more_impossible_values_are_refused(spoiled):
    with pytest.raises(MalformedResponseError):
        parse_flight(dict(_GOOD_FLIGHT, **spoiled))


class _FlakySession:
    """Raises the given errors on the first GETs, then answers with one flight."""

    def __init__(self, errors):
        self.errors = list(errors)
        self.gets = 0

    def get(self, url, **kwargs):
        self.gets += 1
        if self.errors:
            raise self.errors.pop(0)
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps([_GOOD_FLIGHT]).encode()
        return response


@pytest.mark.parametrize(
    "error", [requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError]
)
def test_a_body_broken_in_transit_is_asked_for_again(error):
    session = _FlakySession([error("connection broken mid-body")])
    client = OpenSkyClient(
        api_url="http://opensky.invalid/api",
        token_url="http://opensky.invalid/token",
        client_id="",
        client_secret="",
        timeout=1,
        max_attempts=2,
        backoff_seconds=0,
        session=session,
    )
    answer = client.flights("departure", begin=0, end=3600, airport="LSZH")
    assert session.gets == 2 and len(answer.flights) == 1


class _BodiesSession:
    """Answers each GET with the next of ``bodies`` (status 200), the last one repeatedly."""

    def __init__(self, *bodies: str):
        self.bodies = list(bodies)
        self.gets = 0

    def get(self, url, **kwargs):
        self.gets += 1
        response = requests.Response()
        response.status_code = 200
        body = self.bodies.pop(0) if len(self.bodies) > 1 else self.bodies[0]
        response._content = body.encode()
        return response


def _client(session, max_attempts=3) -> OpenSkyClient:
    return OpenSkyClient(
        api_url="http://opensky.invalid/api",
        token_url="http://opensky.invalid/token",
        client_id="",
        client_secret="",
        timeout=1,
        max_attempts=max_attempts,
        backoff_seconds=0,
        session=session,
    )


@pytest.mark.parametrize("variant", sorted(MALFORMED_FLIGHTS))
def test_a_malformed_body_is_asked_for_again_within_the_request(variant):
    malformed = metric_value("departure", "malformed")
    session = _BodiesSession(MALFORMED_FLIGHTS[variant], json.dumps([_GOOD_FLIGHT]))
    answer = _client(session).flights("departure", begin=0, end=3600, airport="LSZH")
    assert session.gets == 2 and len(answer.flights) == 1
    assert metric_value("departure", "malformed") == malformed + 1


def test_a_body_malformed_on_every_attempt_fails_the_request_saying_so():
    session = _BodiesSession(MALFORMED_FLIGHTS["truncated"])
    with pytest.raises(UnavailableError, match=r"malformed body.*\(3 attempts\)"):
        _client(session, max_attempts=3).flights("arrival", begin=0, end=3600, airport="LSZH")
    assert session.gets == 3


def metric_value(endpoint: str, outcome: str) -> float:
    """The in-process ``opensky_requests_total`` for one endpoint and outcome."""
    value = REGISTRY.get_sample_value(
        "opensky_requests_total", {"endpoint": endpoint, "outcome": outcome}
    )
    return value or 0.0

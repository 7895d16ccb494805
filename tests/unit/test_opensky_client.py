"""The OpenSky client refuses values it could not store and retries broken or malformed bodies."""

import json
import time

import pytest
import requests
from prometheus_client import REGISTRY

from data_collector.collection.opensky import (
    BreakerSnapshot,
    CircuitOpenError,
    MalformedResponseError,
    OpenSkyClient,
    RateLimitedError,
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


def _client(session, max_attempts=3, **options) -> OpenSkyClient:
    """A client of nothing real, anonymous unless ``options`` give credentials (or a breaker)."""
    defaults = {"client_id": "", "client_secret": "", "timeout": 1, "backoff_seconds": 0}
    return OpenSkyClient(
        api_url="http://opensky.invalid/api",
        token_url="http://opensky.invalid/token",
        max_attempts=max_attempts,
        session=session,
        **{**defaults, **options},
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


class _ScriptedSession:
    """Answers GETs in turn: a status (200: no flights), a (status, body), or raises; then 200."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.gets = 0

    def get(self, url, **kwargs):
        self.gets += 1
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        status, body = answer if isinstance(answer, tuple) else (answer, b"[]")
        response = requests.Response()
        response.status_code = status
        response._content = body
        return response


def breaker_client(session, *, failures=3, cooldown=60.0, attempts=2) -> OpenSkyClient:
    return _client(
        session, max_attempts=attempts, breaker_failures=failures, breaker_cooldown=cooldown
    )


def fetch(client):
    return client.flights("arrival", begin=0, end=3600, airport="LIRF")


def test_consecutive_failures_open_the_breaker_and_no_call_is_made_while_it_is_open():
    session = _ScriptedSession([503, requests.exceptions.ConnectTimeout("slow"), 502])
    client = breaker_client(session)
    with pytest.raises(UnavailableError):
        fetch(client)  # two attempts failed: the range fails, the breaker is not open yet
    with pytest.raises(CircuitOpenError) as opened:
        fetch(client)  # its first attempt is the third failure in a row: no second attempt
    assert session.gets == 3 and "HTTP 502" in str(opened.value)
    snapshot = client.breaker_snapshot()
    assert (snapshot.state, snapshot.failures) == ("open", 3)
    with pytest.raises(CircuitOpenError):
        fetch(client)
    assert session.gets == 3  # refused without a call


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [(404, None), (429, RateLimitedError), ((200, b"not json"), UnavailableError)],
    ids=["no flights", "rate limited", "malformed"],
)
def test_an_answer_that_is_not_a_failure_starts_the_count_again(answer, outcome):
    session = _ScriptedSession([503, 503, answer, 503, 503])
    client = breaker_client(session, attempts=1)
    for _ in range(2):
        with pytest.raises(UnavailableError):
            fetch(client)
    if outcome is None:
        assert fetch(client).flights == []
    else:
        with pytest.raises(outcome):
            fetch(client)
    for _ in range(2):
        with pytest.raises(UnavailableError):
            fetch(client)
    snapshot = client.breaker_snapshot()
    assert (snapshot.state, snapshot.failures) == ("closed", 2)


def test_after_the_cool_down_one_trial_call_closes_or_opens_it_again():
    session = _ScriptedSession([503, 503])
    client = breaker_client(session, failures=2, cooldown=0.1, attempts=1)
    for _ in range(2):
        with pytest.raises((UnavailableError, CircuitOpenError)):
            fetch(client)
    assert client.breaker_snapshot().state == "open"
    # Resumed in another process (the next cycle), after the cool-down: a trial that works.
    resumed = breaker_client(session, failures=2, cooldown=0.0, attempts=1)
    resumed.resume_breaker(client.breaker_snapshot())
    assert fetch(resumed).flights == []
    opened_at = client.breaker_snapshot().opened_at
    assert resumed.breaker_snapshot() == BreakerSnapshot("closed", 0, opened_at)
    # A trial that fails opens it again at once.
    session.answers, calls = [503], session.gets
    failing = breaker_client(session, failures=2, cooldown=0.0, attempts=3)
    failing.resume_breaker(client.breaker_snapshot())
    with pytest.raises(CircuitOpenError):
        fetch(failing)
    # One call, the trial: none of the request's other attempts is made.
    assert failing.breaker_snapshot().state == "open" and session.gets == calls + 1


def test_a_body_nested_past_the_json_parser_is_malformed_and_asked_for_again():
    malformed = metric_value("departure", "malformed")
    session = _BodiesSession("[" * 100_000 + "]" * 100_000, json.dumps([_GOOD_FLIGHT]))
    answer = _client(session).flights("departure", begin=0, end=3600, airport="LSZH")
    assert session.gets == 2 and len(answer.flights) == 1
    assert metric_value("departure", "malformed") == malformed + 1


class _TokenSession:
    """Answers the token POSTs in turn with ``tokens``; every GET with no flights."""

    def __init__(self, *tokens: dict):
        self.tokens = list(tokens)
        self.sent: list[str] = []

    def post(self, url, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(self.tokens.pop(0)).encode()
        return response

    def get(self, url, headers=None, **kwargs):
        self.sent.append(headers["Authorization"])
        response = requests.Response()
        response.status_code = 200
        response._content = b"[]"
        return response


def test_a_token_that_could_not_be_sent_or_would_never_expire_is_asked_for_again():
    session = _TokenSession(
        {"access_token": "not-latin-1-\u20ac", "expires_in": 1800},  # no header can carry it
        {"access_token": "two\nlines", "expires_in": 1800},
        {"access_token": "good", "expires_in": float("nan")},  # would never expire
        {"access_token": "good", "expires_in": 1e18},  # used for a day at most
    )
    client = _client(session, max_attempts=4, client_id="collector", client_secret="secret")
    client.flights("arrival", begin=0, end=3600, airport="LIRF")
    assert session.sent == ["Bearer good"] and session.tokens == []
    assert client._token_expires_at - time.monotonic() <= 86_400

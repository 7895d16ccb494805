"""Injected failures: what each kind answers, which requests consume them, and the call log."""

import json
import time

import pytest

from opensky_sim import simulator
from opensky_sim.simulator import TOKEN_PATH

from .helpers import GOOD_FORM, day_start, flight, flights

B = day_start(3)


def departures(client):
    return flights(client, "departure", B, B + 3600, "EGLL")


def inject(client, failures, endpoint=None):
    response = client.post("/_sim/failures", json={"failures": failures, "endpoint": endpoint})
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_status_failure_answers_one_request_then_service_recovers(client, status):
    inject(client, [{"status": status}])

    failed = departures(client)

    assert failed.status_code == status
    assert departures(client).status_code == 200
    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 30


def test_failures_fire_in_fifo_order_each_once(client):
    inject(client, [{"status": 500}, {"status": 503}])
    inject(client, [{"status": 502}])

    statuses = [departures(client).status_code for _ in range(4)]

    assert statuses == [500, 503, 502, 200]
    assert client.get("/_sim/failures").get_json() == []


def test_pending_failures_are_listed_and_can_be_cleared(client):
    inject(client, [{"status": 500}, {"kind": "timeout", "seconds": 1}], endpoint="arrival")

    assert client.get("/_sim/failures").get_json() == [
        {"endpoint": "arrival", "failure": {"kind": "status", "status": 500}},
        {"endpoint": "arrival", "failure": {"kind": "timeout", "seconds": 1}},
    ]
    client.delete("/_sim/failures")
    assert client.get("/_sim/failures").get_json() == []


def test_endpoint_filter_only_hits_that_endpoint(client):
    inject(client, [{"status": 500}], endpoint="arrival")

    assert departures(client).status_code == 200
    assert flights(client, "all", B, B + 3600).status_code == 200
    assert flights(client, "arrival", B, B + 3600, "EGLL").status_code == 500


def test_later_failure_for_another_endpoint_does_not_block_the_queue(client):
    inject(client, [{"status": 503}], endpoint="arrival")
    inject(client, [{"status": 500}], endpoint="departure")

    assert departures(client).status_code == 500
    assert client.get("/_sim/failures").get_json()[0]["endpoint"] == "arrival"


def test_unfiltered_failures_hit_flights_endpoints_but_not_the_token_endpoint(client):
    inject(client, [{"status": 500}])

    assert client.post(TOKEN_PATH, data=GOOD_FORM).status_code == 200
    assert flights(client, "all", B, B + 3600).status_code == 500


@pytest.mark.parametrize("status", [500, 503])
def test_token_endpoint_failures(client, status):
    inject(client, [{"status": status}], endpoint="token")

    assert client.post(TOKEN_PATH, data=GOOD_FORM).status_code == status
    assert client.post(TOKEN_PATH, data=GOOD_FORM).status_code == 200


def test_injected_401_on_token_endpoint_looks_like_keycloak(client):
    inject(client, [{"status": 401}], endpoint="token")

    response = client.post(TOKEN_PATH, data=GOOD_FORM)

    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"


def test_injected_401_on_flights_has_empty_body(client):
    inject(client, [{"status": 401}])

    response = departures(client)

    assert response.status_code == 401
    assert response.data == b""


def test_injected_429_carries_retry_after_and_charges_nothing(client):
    inject(client, [{"status": 429, "retry_after": 5}])

    response = departures(client)

    assert response.status_code == 429
    assert response.headers["X-Rate-Limit-Retry-After-Seconds"] == "5"
    assert response.headers["X-Rate-Limit-Remaining"] == "400"
    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 0


def test_timeout_delays_then_answers_normally(client):
    inject(client, [{"kind": "timeout", "seconds": 0.3}])

    started = time.monotonic()
    response = departures(client)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    call = client.get("/_sim/calls").get_json()[-1]
    assert call["finished_at"] - call["started_at"] >= 0.3
    assert call["injected"] == {"kind": "timeout", "seconds": 0.3}
    assert call["cost"] == 30


class SimulatorClock:
    """The simulator's ``time`` module, whose ``time()`` moves only when the test says."""

    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now


def test_an_outage_answers_every_matching_request_until_it_is_over(client, monkeypatch):
    # The simulator's own clock: however slow the machine, the outage lasts until the
    # test moves past it, not until the requests happen to take half a second.
    clock = SimulatorClock()
    monkeypatch.setattr(simulator, "time", clock)
    inject(client, [{"status": 503, "for_seconds": 0.5}], endpoint="departure")
    inject(client, [{"status": 500}], endpoint="departure")

    during = [departures(client).status_code for _ in range(3)]
    other = flights(client, "arrival", B, B + 3600, "EGLL").status_code
    (pending, queued) = client.get("/_sim/failures").get_json()
    clock.now += 0.6
    after = [departures(client).status_code for _ in range(2)]

    assert during == [503, 503, 503] and other == 200
    assert pending["failure"]["for_seconds"] == 0.5 and "until" in pending["failure"]
    assert queued["failure"] == {"kind": "status", "status": 500}
    # Once the outage is over, the failure queued behind it fires, then all is well.
    assert after == [500, 200]
    assert client.get("/_sim/failures").get_json() == []
    logged = [c["injected"] for c in client.get("/_sim/calls").get_json()]
    assert [bool(i and i.get("for_seconds")) for i in logged] == [True] * 3 + [False] * 3


def _is_broken_flights_body(text):
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return True
    if not isinstance(body, list):
        return True
    return any(
        not isinstance(item, dict) or not isinstance(item.get("icao24"), str) for item in body
    )


@pytest.mark.parametrize("variant", [None, "truncated", "not_a_list", "bad_items"])
def test_malformed_body_comes_with_status_200(client, variant):
    failure = (
        {"kind": "malformed"} if variant is None else {"kind": "malformed", "variant": variant}
    )
    inject(client, [failure])

    response = departures(client)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert _is_broken_flights_body(response.get_data(as_text=True))
    assert departures(client).status_code == 200


def test_out_of_range_body_has_the_right_types_and_one_impossible_value_per_flight(client):
    inject(client, [{"kind": "malformed", "variant": "out_of_range"}])

    response = departures(client)

    assert response.status_code == 200
    body = json.loads(response.get_data(as_text=True))
    good = flight("4b1805", 1_700_000_000, 1_700_003_600, "LSZH", "LIRF", "SWR1234 ")
    assert len(body) >= 6
    for item in body:
        assert set(item) == set(good)
        assert all(type(item[key]) is type(good[key]) for key in good), item
        assert [key for key in good if item[key] != good[key]], "every flight is spoiled"
    assert departures(client).status_code == 200


@pytest.mark.parametrize("variant", ["truncated", "not_a_list", "bad_items", "out_of_range"])
def test_malformed_token_answer_has_no_usable_token(client, variant):
    inject(client, [{"kind": "malformed", "variant": variant}], endpoint="token")

    response = client.post(TOKEN_PATH, data=GOOD_FORM)

    assert response.status_code == 200
    try:
        body = json.loads(response.get_data(as_text=True))
    except json.JSONDecodeError:
        return
    usable = (
        isinstance(body, dict)
        and isinstance(body.get("access_token"), str)
        and isinstance(body.get("expires_in"), int)
        and body["expires_in"] > 0
    )
    assert not usable


def test_call_log_records_injected_failures_and_outcomes(client):
    inject(client, [{"status": 503}])
    departures(client)
    departures(client)

    first, second = client.get("/_sim/calls").get_json()

    assert first["injected"] == {"kind": "status", "status": 503}
    assert (first["status"], first["cost"]) == (503, 0)
    assert second["injected"] is None
    assert (second["status"], second["cost"]) == (200, 30)
    assert first["endpoint"] == "departure"
    assert first["path"] == "/api/flights/departure"
    assert first["params"] == {"airport": "EGLL", "begin": str(B), "end": str(B + 3600)}
    assert first["client"] == "anonymous"
    assert first["started_at"] <= first["finished_at"] <= second["started_at"]


@pytest.mark.parametrize(
    "body",
    [
        {"failures": [{"status": 200}]},
        {"failures": [{"kind": "timeout"}]},
        {"failures": [{"kind": "malformed", "variant": "upside_down"}]},
        {"failures": [{"kind": "explode"}]},
        {"failures": [{"status": 429, "retry_after": "soon"}]},
        {"failures": {"status": 500}},
        {"failures": [{"status": 500}], "endpoint": "states"},
        {"failures": [{"status": 503, "for_seconds": 0}]},
        {"failures": [{"status": 503, "for_seconds": "a minute"}]},
    ],
)
def test_invalid_failure_specs_are_rejected_and_nothing_is_queued(client, body):
    response = client.post("/_sim/failures", json=body)

    assert response.status_code == 400
    assert response.get_json()["error"]
    assert client.get("/_sim/failures").get_json() == []

"""Credit accounting: OpenSky's cost table, per-client daily buckets and the 429."""

import time

import pytest

from opensky_sim.simulator import request_cost

from .helpers import DAY, bearer, day_start, flights, token

B = day_start(5)


def charged(client, response):
    used = client.get("/_sim/credits").get_json()["anonymous"]["used"]
    assert int(response.headers["X-Rate-Limit-Remaining"]) == 400 - used
    assert client.get("/_sim/calls").get_json()[-1]["cost"] == used
    return used


def test_window_starting_within_24_hours_costs_4(client):
    now = int(time.time())

    response = flights(client, "departure", now - DAY + 60, now, "EGLL")

    assert charged(client, response) == 4


@pytest.mark.parametrize(
    ("begin", "end", "cost"),
    [
        (B, B + 3600, 30),  # one day partition
        (B, B + DAY - 1, 30),  # still one
        (B + DAY - 3600, B + DAY + 3600, 30),  # two partitions
        (B + DAY - 400, B + 3 * DAY - 400, 180),  # three partitions, 60 each
    ],
)
def test_older_windows_cost_by_day_partitions_touched(client, begin, end, cost):
    response = flights(client, "arrival", begin, end, "EGLL")

    assert charged(client, response) == cost


def test_all_endpoint_costs_the_same_way(client):
    response = flights(client, "all", B + DAY - 3600, B + DAY + 3600)

    assert charged(client, response) == 30


@pytest.mark.parametrize(("partitions", "cost"), [(10, 600), (11, 5280), (25, 12000), (26, 24960)])
def test_long_windows_follow_opensky_cost_table(partitions, cost):
    now = B + 100 * DAY

    assert request_cost(B, B + (partitions - 1) * DAY, now) == cost


def test_token_clients_have_their_own_bucket(client):
    flights(client, "departure", B, B + 3600, "LIRF", bearer(token(client)))

    credits = client.get("/_sim/credits").get_json()
    assert credits["sim-client"] == {"limit": 4000, "used": 30, "remaining": 3970}
    assert credits["anonymous"] == {"limit": 400, "used": 0, "remaining": 400}


def test_exhausted_budget_gets_429_with_retry_after_and_no_charge(client):
    client.put("/_sim/credits", json={"client": "anonymous", "remaining": 20})

    response = flights(client, "departure", B, B + 3600, "LIRF")

    assert response.status_code == 429
    assert response.headers["X-Rate-Limit-Remaining"] == "20"
    until_midnight = DAY - int(time.time()) % DAY
    assert abs(int(response.headers["X-Rate-Limit-Retry-After-Seconds"]) - until_midnight) <= 2
    assert client.get("/_sim/credits").get_json()["anonymous"]["remaining"] == 20
    assert client.get("/_sim/calls").get_json()[-1]["cost"] == 0

    now = int(time.time())
    cheap = flights(client, "departure", now - 3600, now, "EGLL")
    # Whether a departure of the last hour has already landed depends on the time of day.
    assert cheap.status_code in (200, 404)
    assert cheap.headers["X-Rate-Limit-Remaining"] == "16"


def test_budget_resets_at_utc_midnight_of_the_sim_clock(client):
    flights(client, "departure", B, B + 3600, "LIRF")
    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 30

    until_midnight = DAY - int(time.time()) % DAY
    client.put("/_sim/clock", json={"offset_seconds": until_midnight + 1})

    assert client.get("/_sim/credits").get_json()["anonymous"]["used"] == 0


def test_limit_can_be_changed(client):
    response = client.put("/_sim/credits", json={"client": "sim-client", "limit": 8000})

    assert response.get_json() == {"limit": 8000, "used": 0, "remaining": 8000}


def test_setting_credits_for_an_unknown_client_is_404(client):
    response = client.put("/_sim/credits", json={"client": "nobody", "remaining": 5})

    assert response.status_code == 404
    assert "nobody" in response.get_json()["error"]

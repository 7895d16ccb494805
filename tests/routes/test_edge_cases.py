"""Inputs that once got a 5xx or an undocumented status (found by fuzzing).

Each test pins the fix of one finding of the schemathesis run
(tests/integration/test_api_fuzz.py) or of the review of the code it
fuzzed. Route-level: the requests go to the apps in this process.
"""

import pytest

from common.web.pagination import encode_cursor


@pytest.fixture
def um(um_client):
    return um_client


@pytest.fixture
def dc(dc_client):
    return dc_client


def test_a_non_ascii_digit_for_days_is_a_400(dc):
    # "²".isdigit() is True, but int("²") raises: this was a 500.
    response = dc.get("/flights/average/LIRF", params={"days": "²"})
    assert response.status_code == 400
    assert response.json()["details"] == {"days": "²"}


def test_a_cursor_with_a_boolean_flight_id_is_a_400(dc):
    # True is an int to Python, and PostgreSQL refused to compare it with a bigint: a 500.
    cursor = encode_cursor(["2026-01-01T00:00:00+00:00", True, "arrival"])
    response = dc.get("/flights/LIRF", params={"cursor": cursor})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]


def test_an_empty_type_is_refused_like_any_unknown_type(dc):
    # The documents list arrivals and departures only; an empty value used to mean both.
    for path in ("/flights/LIRF", "/flights/last/LIRF", "/flights/average/LIRF"):
        response = dc.get(path, params={"type": ""})
        assert response.status_code == 400, path
        assert response.json()["details"] == {"type": ""}


@pytest.mark.parametrize(
    ("service", "path"),
    [("um", "/users/{}"), ("dc", "/interests/{}")],
)
def test_an_email_with_a_line_break_is_an_invalid_email_not_an_unknown_url(service, path, um, dc):
    # Werkzeug's <path:...> stopped at a newline, so no route matched: a 404 "URL not found".
    api = um if service == "um" else dc
    response = api.get(path.format("mario%0A@example.com"))
    assert response.status_code == 400
    assert "U+000A" in response.json()["error"]  # email-validator names the bad character

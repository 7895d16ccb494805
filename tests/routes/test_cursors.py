"""Every paginated route checks what its cursor decodes to: a crafted cursor is a 400, never a 5xx.

A cursor is opaque to clients but travels through their hands, so anything
can come back in it: every value is checked before it reaches PostgreSQL.
Route-level: the requests go to the apps in this process.
"""

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.web.pagination import encode_cursor
from tests.utils import Api, create_user

# Route, query, and how many values its cursor holds.
PAGINATED = [
    ("um", "/users", {}, 1),
    ("dc", "/flights/LIRF", {}, 3),
    ("dc", "/flights/LIRF", {"type": "arrivals"}, 3),
    ("dc", "/flights/LIRF", {"type": "departures"}, 3),
    ("dc", "/flights", {}, 4),
    ("dc", "/flights", {"type": "departures"}, 4),
    ("dc", "/flights", {"email": "FOLLOWER"}, 4),
]
FLIGHT_LISTS = [route for route in PAGINATED if route[0] == "dc"]


@pytest.fixture(scope="module")
def follower(stack) -> str:
    """A user who follows an airport, for ``GET /flights?email=``."""
    email = create_user(Api(stack.user_manager_url))
    answer = Api(stack.data_collector_url).post(
        "/interests", json={"email": email, "airport_code": "LIRF"}
    )
    assert answer.status_code == 201, answer.text
    return email


def list_page(um_client, dc_client, follower, route, cursor: str):
    service, path, query, _arity = route
    api = um_client if service == "um" else dc_client
    params = {name: follower if value == "FOLLOWER" else value for name, value in query.items()}
    return api.get(path, params={**params, "cursor": cursor, "limit": "2"})


@pytest.mark.parametrize("route", FLIGHT_LISTS, ids=lambda r: f"{r[1]}{r[2] or ''}")
@pytest.mark.parametrize(
    "moment",
    [
        "2026-12-07T10:00:00+20:00",  # beyond PostgreSQL's offsets (+-15:59): once a 500
        "2026-12-07T10:00:00-23:59",
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T10:00:00",  # no offset: which time would it be?
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
)
def test_a_cursor_time_other_than_utc_is_a_400(um_client, dc_client, follower, route, moment):
    key = [moment, 1, "LIRF", "arrival"] if route[3] == 4 else [moment, 1, "arrival"]
    answer = list_page(um_client, dc_client, follower, route, encode_cursor(key))
    assert answer.status_code == 400, answer.text
    assert "cursor" in answer.json()["error"]


@pytest.mark.parametrize("route", PAGINATED, ids=lambda r: f"{r[1]}{r[2] or ''}")
def test_a_cursor_nesting_deeper_than_the_parser_goes_is_a_400(
    um_client, dc_client, follower, route
):
    cursor = base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("=")
    answer = list_page(um_client, dc_client, follower, route, cursor)
    assert answer.status_code == 400, answer.text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
# Times as a cursor's first value: naive, UTC, or at any offset Python allows (PostgreSQL
# takes offsets up to 15:59 only), in every ISO form Python writes.
offsets = st.one_of(
    st.integers(min_value=-1439, max_value=1439).map(lambda minutes: timedelta(minutes=minutes)),
    st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23)),
).map(timezone)
moments = st.builds(
    lambda moment, zone, spec: moment.replace(tzinfo=zone).isoformat(timespec=spec),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    st.one_of(st.none(), st.just(UTC), offsets),
    st.sampled_from(["auto", "seconds", "microseconds", "minutes"]),
)
moments = moments | moments.map(lambda text: text.replace("+00:00", "Z"))
# Each position of a sort key: a value of its type (well formed or not), or any JSON value.
POSITIONS = {
    "time": moments,
    "id": st.integers(min_value=-(2**63) - 1, max_value=2**64) | st.booleans(),
    "airport": st.sampled_from(["LIRF", "EGLL", "L" * 8]) | st.text(max_size=10),
    "direction": st.sampled_from(["arrival", "departure"]) | st.text(max_size=10),
    "email": st.emails().map(str) | st.text(max_size=300),
}
SORT_KEYS = {
    1: ["email"],
    3: ["time", "id", "direction"],
    4: ["time", "id", "airport", "direction"],
}


def sort_keys(arity: int):
    """Keys shaped as a route's sort key, whose values may be anything of each type."""
    typed = st.tuples(*(POSITIONS[name] for name in SORT_KEYS[arity])).map(list)
    return typed | st.lists(POSITIONS["time"] | json_values, min_size=arity, max_size=arity)


PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("route", PAGINATED, ids=lambda r: f"{r[1]}{r[2] or ''}")
@PROPERTY_SETTINGS
@given(data=st.data())
def test_no_cursor_yields_a_server_error(um_client, dc_client, follower, route, data):
    key = data.draw(sort_keys(route[3]) | json_values, label="key")
    answer = list_page(um_client, dc_client, follower, route, encode_cursor(key))
    assert answer.status_code in (200, 400), answer.text

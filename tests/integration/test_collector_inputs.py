"""No query string, path segment or body sent to the Data Collector yields a 5xx."""

from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.web.openapi import MAX_REQUEST_LINE_BYTES
from common.web.pagination import encode_cursor
from tests.integration.collector_support import make_flight, today_start
from tests.utils import Api

# Enough generated requests to find the odd character, few enough to stay fast.
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "arrival"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=6,
)
cursors = st.lists(json_values, min_size=3, max_size=3).map(encode_cursor) | st.lists(
    json_values, max_size=4
).map(encode_cursor)
# The parameters the routes read, names a view or url_for uses, and anything else.
PARAMETER_NAMES = (
    "type",
    "since",
    "until",
    "limit",
    "cursor",
    "days",
    "airport_code",
    "icao",
    "email",
    "endpoint",
    "values",
    "_external",
    "_anchor",
    "_method",
    "_scheme",
)
names = st.sampled_from(PARAMETER_NAMES) | st.text(min_size=1, max_size=12)
values = (
    st.text(max_size=30)
    | st.integers().map(str)
    | st.sampled_from(
        [
            "arrivals",
            "departures",
            "²",
            "٣",
            "9" * 4000,
            "99999999999.999999",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-14:00",
            "2026-02-30",
        ]
    )
    | cursors
)
query_strings = st.lists(st.tuples(names, values), max_size=5).map(urlencode) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
).map(lambda raw: quote(raw, safe="&=%+;"))
segments = st.sampled_from(["LIPZ", "lipz", "KSFO", "ZZZZ", "a@b.co"]) | st.text(
    min_size=1, max_size=20
)
GET_ROUTES = (
    "/flights/{}",
    "/flights/last/{}",
    "/flights/average/{}",
    "/interests/{}",
    "/ping",
    "/health",
    "/metrics",
)


def assert_no_server_error(response) -> None:
    assert response.status_code < 500, (response.request.url, response.status_code, response.text)
    if response.status_code >= 400 and response.headers.get("Content-Type") == "application/json":
        assert "error" in response.json()


@pytest.fixture(scope="module")
def api(stack) -> Api:
    return Api(stack.data_collector_url)


@pytest.mark.parametrize(
    "query",
    [
        "/flights/average/LIPZ?days=²",
        "/flights/average/LIPZ?days=٣",
        "/flights/average/LIPZ?days=" + "9" * 50,
        "/flights/LIPZ?cursor=" + encode_cursor(["2026-01-01T00:00:00+00:00", True, "arrival"]),
        "/flights/LIPZ?cursor=" + encode_cursor(["2026-01-01T00:00:00+00:00", 2**70, "arrival"]),
        "/flights/LIPZ?cursor=" + encode_cursor(["2026-01-01T00:00:00+00:00", 1.0, "arrival"]),
        "/flights/LIPZ?cursor=" + encode_cursor([17, 1, "arrival"]),
        "/flights/LIPZ?cursor=" + encode_cursor(["2026-01-01", 1, ["arrival"]]),
    ],
)
def test_odd_numbers_and_cursor_fields_are_a_400(api, query):
    response = api.get(query)
    assert response.status_code == 400, response.text
    assert "error" in response.json()


@PROPERTY_SETTINGS
@given(route=st.sampled_from(GET_ROUTES), segment=segments, query=query_strings)
def test_no_query_or_path_segment_yields_a_server_error(api, route, segment, query):
    path = route.format(quote(segment, safe="@"))
    assert_no_server_error(api.get(f"{path}?{query}"))


@PROPERTY_SETTINGS
@given(
    method=st.sampled_from(["POST", "DELETE"]),
    query=query_strings,
    body=json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "email": st.text(max_size=30) | st.just("nobody@example.com") | json_values,
            "airport_code": segments | json_values,
        },
    ),
)
def test_no_interest_request_yields_a_server_error(api, method, query, body):
    assert_no_server_error(api.request(method, f"/interests?{query}", json=body))


@settings(max_examples=10, deadline=None)
@given(query=query_strings)
def test_no_query_on_a_collection_request_yields_a_server_error(api, query):
    assert_no_server_error(api.post(f"/collection/runs?{query}"))


@pytest.fixture
def paginated(collector):
    """LIPZ with three departures, so a page of one has a next page and a Link to build."""
    start = today_start() - 86400
    collector.sim.load_dataset(
        [make_flight(f"c0000{n}", "LIPZ", "LIRF", start + n * 3600) for n in range(1, 4)]
    )
    assert collector.follow("LIPZ")["outcome"] == "done"
    return collector.dc


@pytest.mark.local_stack
@PROPERTY_SETTINGS
@given(name=names, value=values)
@example(name="airport_code", value="LIRF")
@example(name="endpoint", value="x")
@example(name="_external", value="0")
@example(name="_anchor", value="x")
def test_no_unknown_parameter_on_a_paginated_list_yields_a_server_error(paginated, name, value):
    if name in {"limit", "cursor", "type", "since", "until"}:
        return
    response = paginated.get("/flights/LIPZ", params={"limit": "1", name: value})
    assert_no_server_error(response)
    if len(f"GET {response.request.path_url} HTTP/1.1") > MAX_REQUEST_LINE_BYTES:
        assert response.status_code == 414  # refused by gunicorn, as documented
        return
    assert response.status_code == 200 and "next" in response.links

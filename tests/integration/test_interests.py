"""Interests: validated ICAO codes, stored once, checked against the User Manager over gRPC."""

import time

import grpc
import pytest

from common.rpc.generated import flight_tracker_pb2, flight_tracker_pb2_grpc
from tests.utils import create_user, reconcile_interests, run_sql, unique_email


def interest(email, code):
    return {"email": email, "airport_code": code}


def test_codes_are_upper_cased_and_stored_once(um, dc):
    email = create_user(um)
    first = dc.post("/interests", json=interest(email, " lirf "))
    assert first.status_code == 201
    assert first.json() == {"message": "Interest added and data fetch initiated"}
    again = dc.post("/interests", json=interest(email, "LIRF"))
    assert again.status_code == 200
    listed = dc.get(f"/interests/{email}").json()
    assert [(i["airport_code"], i["airport_name"]) for i in listed] == [
        ("LIRF", "Leonardo Da Vinci (Fiumicino) International Airport")
    ]


@pytest.mark.parametrize("code", ["LIR", "LIRFX", "LI-F", "", "ZZZZ", "QQQQ"])
def test_malformed_or_unknown_airport_codes_are_a_400(um, dc, code):
    email = create_user(um)
    response = dc.post("/interests", json=interest(email, code))
    assert response.status_code == 400, response.text
    assert "airport_code" in response.json()["details"]
    assert dc.get(f"/interests/{email}").json() == []


def test_removing_an_interest_and_removing_it_again(um, dc):
    email = create_user(um)
    assert dc.post("/interests", json=interest(email, "LIMC")).status_code == 201
    assert dc.delete("/interests", json=interest(email, "limc")).status_code == 200
    missing = dc.delete("/interests", json=interest(email, "LIMC"))
    assert missing.status_code == 404 and "error" in missing.json()
    assert dc.get(f"/interests/{email}").json() == []


def test_delete_user_interests_over_grpc_is_idempotent_and_counts(local_stack, um, dc):
    email = create_user(um)
    for code in ("LIRF", "LIMC", "EGLL"):
        assert dc.post("/interests", json=interest(email, code)).status_code == 201
    address = f"127.0.0.1:{local_stack.settings.data_collector_grpc_port}"
    with grpc.insecure_channel(address) as channel:
        stub = flight_tracker_pb2_grpc.DataCollectorServiceStub(channel)
        request = flight_tracker_pb2.UserRequest(email=email.upper())
        assert stub.DeleteUserInterests(request, timeout=5).deleted_count == 3
        assert stub.DeleteUserInterests(request, timeout=5).deleted_count == 0
    assert dc.get(f"/interests/{email}").json() == []


@pytest.mark.local_stack
def test_user_manager_down_answers_503_quickly(local_stack, dc):
    local_stack.stop_service("user_manager")
    try:
        started = time.monotonic()
        response = dc.post("/interests", json=interest(unique_email(), "LIRF"))
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert "error" in response.json()
        # The gRPC deadline (GRPC_TIMEOUT_SECONDS, 2 s) bounds the wait, where a hang
        # would last until gunicorn's 30 s timeout; a refused connection fails sooner.
        assert elapsed < 5
        # The flights of a user's airports need the same check.
        flights = dc.get("/flights", params={"email": unique_email()})
        assert flights.status_code == 503 and "error" in flights.json()
        assert "Retry-After" in flights.headers
    finally:
        local_stack.start_service("user_manager")


def orphan_and_kept_user(local_stack, um, dc) -> tuple[str, str]:
    """A user deleted behind the collector's back (no DeleteUserInterests), and one still there."""
    gone, kept = create_user(um), create_user(um)
    for email in (gone, kept):
        assert dc.post("/interests", json=interest(email, "LIRF")).status_code == 201
    run_sql(
        local_stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "DELETE FROM users WHERE email = %s",
        (gone,),
    )
    collector_db = local_stack.database_urls["DATA_COLLECTOR_DATABASE_URL"]
    # Added an hour ago, past the grace period...
    run_sql(
        collector_db,
        "UPDATE user_interests SET created_at = now() - interval '1 hour' "
        "WHERE user_email IN (%s, %s)",
        (gone, kept),
    )
    # ... and one added just now, as if its POST were between its user check and insert.
    run_sql(
        collector_db,
        "INSERT INTO user_interests (user_email, airport_code, created_at) "
        "VALUES (%s, 'LIMC', now())",
        (gone,),
    )
    return gone, kept


@pytest.mark.local_stack
def test_interests_of_a_user_deleted_behind_the_collector_are_reconciled_away(local_stack, um, dc):
    gone, kept = orphan_and_kept_user(local_stack, um, dc)
    assert reconcile_interests(local_stack)["removed"] >= 1
    assert [i["airport_code"] for i in dc.get(f"/interests/{gone}").json()] == ["LIMC"]
    assert [i["airport_code"] for i in dc.get(f"/interests/{kept}").json()] == ["LIRF"]


@pytest.mark.local_stack
def test_reconciliation_deletes_nothing_while_the_user_manager_is_down(local_stack, um, dc):
    gone, _kept = orphan_and_kept_user(local_stack, um, dc)
    local_stack.stop_service("user_manager")
    try:
        assert reconcile_interests(local_stack)["removed"] == 0
    finally:
        local_stack.start_service("user_manager")
    assert {i["airport_code"] for i in dc.get(f"/interests/{gone}").json()} == {"LIRF", "LIMC"}


@pytest.mark.parametrize(
    ("thresholds", "named"),
    [
        ({"high_value": -1}, {"high_value"}),
        ({"low_value": -5}, {"low_value"}),
        ({"high_value": 10.5}, {"high_value"}),
        ({"high_value": 10.0}, {"high_value"}),
        ({"low_value": "3"}, {"low_value"}),
        ({"high_value": True}, {"high_value"}),
        ({"low_value": [1]}, {"low_value"}),
        ({"high_value": 2**31}, {"high_value"}),
        ({"high_value": 10, "low_value": 20}, {"high_value", "low_value"}),
        ({"high_value": 10, "low_value": 10}, {"high_value", "low_value"}),
    ],
    # Sorted: a set's order changes from one process to the next, and pytest-xdist needs every
    # worker to collect the same test ids.
    ids=lambda value: str(sorted(value) if isinstance(value, set) else value),
)
def test_thresholds_that_are_not_whole_numbers_in_order_are_a_400_naming_them(
    um, dc, thresholds, named
):
    email = create_user(um)
    response = dc.post("/interests", json={**interest(email, "LIRF"), **thresholds})
    assert response.status_code == 400, response.text
    assert set(response.json()["details"]) == named
    assert dc.get(f"/interests/{email}").json() == []


def test_thresholds_are_stored_and_shown_and_either_may_be_left_out(um, dc):
    email = create_user(um)
    for code, thresholds in (("LIRF", {"high_value": 200, "low_value": 0}), ("LIMC", {})):
        response = dc.post("/interests", json={**interest(email, code), **thresholds})
        assert response.status_code == 201, response.text
    upper = {"high_value": 0, "low_value": None}
    assert dc.post("/interests", json={**interest(email, "EGLL"), **upper}).status_code == 201
    listed = {i["airport_code"]: i for i in dc.get(f"/interests/{email}").json()}
    assert {code: (i["high_value"], i["low_value"]) for code, i in listed.items()} == {
        "EGLL": (0, None),
        "LIMC": (None, None),
        "LIRF": (200, 0),
    }
    # No state before the Alert System reports one.
    nothing_yet = {"condition": None, "since": None, "last_email_at": None}
    assert listed["LIRF"]["alert_state"] == nothing_yet


def test_posting_an_interest_again_changes_no_threshold(um, dc):
    email = create_user(um)
    body = {**interest(email, "LIRF"), "high_value": 200}
    assert dc.post("/interests", json=body).status_code == 201
    # The same body again (a client's retry): the 200 of an interest already there.
    assert dc.post("/interests", json=body).status_code == 200
    other = dc.post("/interests", json={**body, "high_value": 300})
    assert other.status_code == 409 and "PUT /interests" in other.json()["error"]
    plain = dc.post("/interests", json=interest(email, "LIRF"))
    assert plain.status_code == 409
    assert dc.get(f"/interests/{email}").json()[0]["high_value"] == 200


def test_put_changes_only_the_thresholds_given_and_keeps_them_in_order(um, dc):
    email = create_user(um)
    body = {**interest(email, "LIRF"), "high_value": 200, "low_value": 10}
    assert dc.post("/interests", json=body).status_code == 201

    def put(**thresholds):
        return dc.put("/interests", json={**interest(email, "lirf"), **thresholds})

    changed = put(low_value=50)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["high_value"], changed.json()["low_value"]) == (200, 50)
    # Merged with the stored upper threshold, a lower one above it is refused, naming both.
    inverted = put(low_value=250)
    assert inverted.status_code == 400
    assert set(inverted.json()["details"]) == {"high_value", "low_value"}
    assert set(put().json()["details"]) == {"high_value", "low_value"}  # nothing to change
    assert set(put(high_value=-1).json()["details"]) == {"high_value"}
    assert put(high_value=None, low_value=None).json()["high_value"] is None
    (shown,) = dc.get(f"/interests/{email}").json()
    assert (shown["high_value"], shown["low_value"]) == (None, None)
    missing = dc.put("/interests", json={**interest(email, "LIMC"), "high_value": 5})
    assert missing.status_code == 404 and "error" in missing.json()
    unknown_user = dc.put("/interests", json={**interest(unique_email(), "LIRF"), "low_value": 1})
    assert unknown_user.status_code == 404

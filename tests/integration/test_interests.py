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

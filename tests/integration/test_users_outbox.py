"""Deleting a user deletes their interests in the Data Collector, even when it is down.

The delete and the pending ``DeleteUserInterests`` call commit together (a
transactional outbox); the request delivers the call itself right after the
commit, and the User Manager's worker relays what failed until the collector
acknowledges it.
"""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.utils import create_user, metric, new_key, run_sql, user_payload, wait_until

# The relay retries within seconds in the test stack (conftest sets its interval
# and backoff ceiling); this bounds how long a recovered collector may take.
DELIVERY_DEADLINE_SECONDS = 30
# The request's own attempt is bounded by the gRPC deadline (2 s); a delete that
# takes longer than this is waiting on the dead peer, which it must not.
PROMPT_ANSWER_SECONDS = 5

AIRPORTS = ("LIRF", "LIMC")


def follow_airports(dc, email: str) -> None:
    for airport in AIRPORTS:
        assert dc.post("/interests", json={"email": email, "airport_code": airport}).ok
    assert len(dc.get(f"/interests/{email}").json()) == len(AIRPORTS)


def pending_messages(local_stack, email: str) -> list[tuple]:
    """The user's undelivered outbox rows: (attempts, last_error) each."""
    return run_sql(
        local_stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "SELECT attempts, last_error FROM outbox WHERE payload->>'email' = %s",
        (email,),
    )


def wait_until_delivered(local_stack, dc, email: str) -> None:
    wait_until(
        lambda: dc.get(f"/interests/{email}").json() == [], timeout=DELIVERY_DEADLINE_SECONDS
    )
    wait_until(lambda: not pending_messages(local_stack, email))


def test_interests_are_gone_when_delete_answers(um, dc):
    email = create_user(um)
    follow_airports(dc, email)

    assert um.delete(f"/users/{email}", headers=new_key()).status_code == 200
    assert dc.get(f"/interests/{email}").json() == []


@pytest.mark.local_stack
def test_delivered_calls_leave_no_backlog(local_stack, um, dc):
    email = create_user(um)
    follow_airports(dc, email)
    assert um.delete(f"/users/{email}", headers=new_key()).status_code == 200
    assert not pending_messages(local_stack, email)


@pytest.mark.local_stack
def test_delete_while_the_collector_is_down_is_delivered_after_restarts(local_stack, um, dc):
    email = create_user(um)
    follow_airports(dc, email)

    local_stack.stop_service("data_collector")
    try:
        started = time.monotonic()
        deleted = um.delete(f"/users/{email}", headers=new_key())
        elapsed = time.monotonic() - started
        assert deleted.status_code == 200
        assert elapsed < PROMPT_ANSWER_SECONDS, f"DELETE took {elapsed:.1f}s"
        assert um.get(f"/users/{email}").status_code == 404

        # Still ready (200), but says the collector is down and calls are waiting.
        response = um.get("/health")
        assert response.status_code == 200
        health = response.json()
        assert health["status"] == "degraded"
        assert health["peer"] == {
            "service": "data_collector",
            "address": local_stack.env["DATA_COLLECTOR_GRPC_ADDR"],
            "status": "unavailable",
        }
        assert health["outbox"]["backlog"] >= 1
        assert health["outbox"]["oldest_pending_seconds"] >= 0
        waiting = metric(um, "outbox_backlog_messages")
        assert waiting >= 1
        assert metric(um, "outbox_oldest_pending_seconds") > 0
        # The relay keeps trying, and records why it fails, while the collector is down.
        [(_, last_error)] = wait_until(
            lambda: [row for row in pending_messages(local_stack, email) if row[0] >= 2],
            timeout=DELIVERY_DEADLINE_SECONDS,
        )
        assert "UNAVAILABLE" in last_error

        # Registering the email again now would let the late delivery wipe the new
        # account's interests: refused for now, and not remembered against the key.
        key = new_key()
        again = um.post("/users", json=user_payload(email), headers=key)
        assert again.status_code == 409
        assert "still being deleted" in again.json()["error"]
        assert again.headers["Retry-After"]

        # The pending call outlives the User Manager's processes.
        local_stack.stop_service("user_manager")
        local_stack.start_service("user_manager")
        assert len(pending_messages(local_stack, email)) == 1
    finally:
        if "user_manager" not in local_stack.supervisor.children:
            local_stack.start_service("user_manager")
        local_stack.start_service("data_collector")

    wait_until_delivered(local_stack, dc, email)
    assert metric(um, "outbox_backlog_messages") < waiting
    assert um.get("/health").json()["status"] == "ok"
    # Delivered: the same request with the same key now creates the account afresh,
    # and its new interests stay.
    assert um.post("/users", json=user_payload(email), headers=key).status_code == 201
    follow_airports(dc, email)


@pytest.mark.local_stack
def test_after_an_outage_waiting_calls_are_delivered_without_waiting_out_their_backoff(
    local_stack, um, dc
):
    email = create_user(um)
    follow_airports(dc, email)
    url = local_stack.database_urls["USER_MANAGER_DATABASE_URL"]
    local_stack.stop_service("data_collector")
    try:
        assert um.delete(f"/users/{email}", headers=new_key()).status_code == 200
        # The relay has tried too (the request made attempt 1) and found the collector down.
        wait_until(
            lambda: [row for row in pending_messages(local_stack, email) if row[0] >= 2],
            timeout=DELIVERY_DEADLINE_SECONDS,
        )
        # As after a long outage: the next attempt is scheduled an hour from now.
        run_sql(
            url,
            "UPDATE outbox SET next_attempt_at = now() + interval '1 hour' "
            "WHERE payload->>'email' = %s",
            (email,),
        )
    finally:
        local_stack.start_service("data_collector")
    returned = time.monotonic()
    wait_until_delivered(local_stack, dc, email)
    assert time.monotonic() - returned < PROMPT_ANSWER_SECONDS * 2


def advisory_locks_held(local_stack) -> int:
    rows = run_sql(
        local_stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
    )
    return rows[0][0]


@pytest.mark.local_stack
def test_a_create_racing_a_delete_of_the_same_email_waits_and_sees_the_deletion(
    local_stack, um, dc
):
    email = create_user(um)
    follow_airports(dc, email)
    local_stack.stop_service("data_collector")  # the deletion of the interests stays pending
    try:
        pausing = {**new_key(), "X-Fault-Inject": "pause-before-commit"}
        with ThreadPoolExecutor(max_workers=2) as pool:
            deleting = pool.submit(um.delete, f"/users/{email}", headers=pausing)
            # The delete holds its transaction (and the email's lock) open: create now.
            wait_until(lambda: advisory_locks_held(local_stack) >= 1)
            creating = pool.submit(um.post, "/users", json=user_payload(email), headers=new_key())
            deleted, created = deleting.result(), creating.result()
        assert deleted.status_code == 200
        # It waited for the delete, then saw the deletion pending: no new account for the
        # late delivery to strip of its interests.
        assert created.status_code == 409, created.text
        assert "still being deleted" in created.json()["error"]
        assert um.get(f"/users/{email}").status_code == 404
    finally:
        local_stack.start_service("data_collector")
    wait_until_delivered(local_stack, dc, email)
    assert um.post("/users", json=user_payload(email), headers=new_key()).status_code == 201
    follow_airports(dc, email)


@pytest.mark.local_stack
def test_the_pending_deletion_guard_reads_an_index_not_the_whole_outbox(local_stack):

    from user_manager.services import CREATE_USER

    database = local_stack.database_urls["USER_MANAGER_DATABASE_URL"]
    run_sql(
        database,
        "INSERT INTO outbox (method, payload, attempts, next_attempt_at) "
        "SELECT 'DeleteUserInterests', jsonb_build_object('email', 'queued' || n || '@x.com'), "
        "0, now() + interval '1 day' FROM generate_series(1, 20000) AS n",
    )
    try:
        run_sql(database, "ANALYZE outbox")
        values = dict.fromkeys(re.findall(r"%\((\w+)\)s", CREATE_USER.work))
        values["subject"] = "someone@example.com"
        [(plan,)] = run_sql(database, f"EXPLAIN (FORMAT JSON) {CREATE_USER.work}", values)
        assert "ix_outbox_pending_email" in json.dumps(plan)
    finally:
        run_sql(database, "DELETE FROM outbox WHERE payload->>'email' LIKE 'queued%%@x.com'")

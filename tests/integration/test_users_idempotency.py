"""At-most-once under duplicates, concurrency, a crash mid-request, key misuse and key expiry."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.utils import (
    DEFAULT_TIMEOUT,
    create_user,
    new_key,
    run_sql,
    unique_email,
    user_payload,
)

REPLAYED = "Idempotent-Replayed"
CONCURRENT_REQUESTS = 50


def sql(local_stack, statement: str, *params) -> list[tuple]:
    return run_sql(local_stack.database_urls["USER_MANAGER_DATABASE_URL"], statement, params)


def user_rows(local_stack, email: str) -> int:
    return sql(local_stack, "SELECT count(*) FROM users WHERE email = %s", email)[0][0]


def age_key(local_stack, key: str, hours: float) -> None:
    """Pretend the key was first used ``hours`` ago."""
    sql(
        local_stack,
        "UPDATE idempotency_keys SET created_at = now() - %s * interval '1 hour' WHERE key = %s",
        hours,
        key,
    )


def key_exists(local_stack, key: str) -> bool:
    return bool(sql(local_stack, "SELECT 1 FROM idempotency_keys WHERE key = %s", key))


@pytest.mark.local_stack
def test_concurrent_requests_with_one_key_create_one_user(local_stack, um):
    body, key = user_payload(), new_key()
    start = threading.Barrier(CONCURRENT_REQUESTS)

    def send(_):
        start.wait()
        return requests.post(
            f"{um.base_url}/users", json=body, headers=key, timeout=DEFAULT_TIMEOUT * 3
        )

    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        responses = list(pool.map(send, range(CONCURRENT_REQUESTS)))

    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {201, 409}, statuses
    assert user_rows(local_stack, body["email"]) == 1
    # Exactly one request did the work; the others waited for it and replayed its answer.
    fresh = [response for response in responses if REPLAYED not in response.headers]
    assert [response.status_code for response in fresh] == [201]
    replay = um.post("/users", json=body, headers=key)
    assert replay.status_code == 201
    assert replay.headers[REPLAYED] == "true"


@pytest.mark.local_stack
def test_crash_before_commit_then_retry_creates_the_user_exactly_once(local_stack, um):
    body, key = user_payload(), new_key()
    with pytest.raises(requests.ConnectionError):
        um.post("/users", json=body, headers={**key, "X-Fault-Inject": "crash-before-commit"})
    # The worker died holding the transaction: nothing of it survived.
    assert user_rows(local_stack, body["email"]) == 0
    assert not key_exists(local_stack, key["Idempotency-Key"])

    retry = um.post("/users", json=body, headers=key)
    assert retry.status_code == 201, retry.text
    assert REPLAYED not in retry.headers
    assert user_rows(local_stack, body["email"]) == 1
    assert um.post("/users", json=body, headers=key).headers[REPLAYED] == "true"


def test_same_key_with_a_different_body_is_a_422_and_changes_nothing(um):
    body, key = user_payload(), new_key()
    assert um.post("/users", json=body, headers=key).status_code == 201

    other_name = um.post("/users", json={**body, "first_name": "Luigi"}, headers=key)
    assert other_name.status_code == 422
    assert "error" in other_name.json()
    other_user = user_payload()
    assert um.post("/users", json=other_user, headers=key).status_code == 422

    assert um.get(f"/users/{body['email']}").json()["first_name"] == body["first_name"]
    assert um.get(f"/users/{other_user['email']}").status_code == 404


def test_same_key_with_another_method_or_path_is_a_422(um):
    email, key = create_user(um), new_key()
    assert um.delete(f"/users/{email}", headers=key).status_code == 200
    other = create_user(um)
    assert um.delete(f"/users/{other}", headers=key).status_code == 422
    assert um.post("/users", json=user_payload(), headers=key).status_code == 422
    assert um.get(f"/users/{other}").status_code == 200


def test_a_key_a_refused_create_used_is_a_422_for_a_delete_of_that_email(um):
    tax_code = f"TC{uuid.uuid4().hex[:12].upper()}"
    create_user(um, tax_code=tax_code)
    key, email = new_key(), unique_email()
    # Refused (the tax code is taken): the key keeps that answer, naming no existing user.
    refused = um.post("/users", json=user_payload(email, tax_code=tax_code), headers=key)
    assert refused.status_code == 409
    for _ in range(2):
        reused = um.delete(f"/users/{email}", headers=key)
        assert reused.status_code == 422, reused.text
        assert "Idempotent-Replayed" not in reused.headers


def test_the_fingerprint_ignores_what_normalization_ignores(um):
    body, key = user_payload(tax_code=None), new_key()
    assert um.post("/users", json=body, headers=key).status_code == 201
    same_request = {
        **body,
        "email": body["email"].upper(),
        "first_name": f"  {body['first_name']} ",
    }
    replay = um.post("/users", json=same_request, headers=key)
    assert replay.status_code == 201
    assert replay.headers[REPLAYED] == "true"


def test_validation_errors_are_not_stored_so_a_corrected_retry_works(um):
    key = new_key()
    body = user_payload(iban="IT60X0542811101000000123457")
    assert um.post("/users", json=body, headers=key).status_code == 400
    corrected = {**body, "iban": "IT60X0542811101000000123456"}
    response = um.post("/users", json=corrected, headers=key)
    assert response.status_code == 201
    assert REPLAYED not in response.headers


def test_a_malformed_key_is_a_400(um):
    for bad in ["has space", "x" * 256]:
        response = um.post("/users", json=user_payload(), headers={"Idempotency-Key": bad})
        assert response.status_code == 400
        assert "Idempotency-Key" in response.json()["error"]


@pytest.mark.local_stack
def test_an_expired_key_acts_as_new_even_before_the_reaper_runs(local_stack, um):
    body, key = user_payload(), new_key()
    assert um.post("/users", json=body, headers=key).status_code == 201
    age_key(local_stack, key["Idempotency-Key"], hours=25)

    other = user_payload()
    response = um.post("/users", json=other, headers=key)
    assert response.status_code == 201
    assert REPLAYED not in response.headers
    assert um.get(f"/users/{other['email']}").status_code == 200


@pytest.fixture
def um_app(local_stack, monkeypatch):
    """The User Manager's Flask app, bound to the test stack's database."""
    from user_manager.app import create_app

    variable = "USER_MANAGER_DATABASE_URL"
    monkeypatch.setenv(variable, local_stack.database_urls[variable])
    return create_app()


@pytest.mark.local_stack
def test_reaper_deletes_expired_keys_in_batches_and_keeps_live_ones(local_stack, um, um_app):
    from user_manager.idempotency import reap_expired_keys

    old_keys = []
    for _ in range(5):
        key = new_key()
        assert um.post("/users", json=user_payload(), headers=key).status_code == 201
        age_key(local_stack, key["Idempotency-Key"], hours=24.5)
        old_keys.append(key)
    live_key = new_key()
    assert um.post("/users", json=user_payload(), headers=live_key).status_code == 201
    age_key(local_stack, live_key["Idempotency-Key"], hours=23)

    with um_app.app_context():
        deleted = reap_expired_keys(batch_size=2)

    assert deleted >= len(old_keys)
    assert not any(key_exists(local_stack, key["Idempotency-Key"]) for key in old_keys)
    assert key_exists(local_stack, live_key["Idempotency-Key"])
    # A reaped key is a new key: reused for another request it is not a 422.
    reused = um.post("/users", json=user_payload(), headers=old_keys[0])
    assert reused.status_code == 201
    assert REPLAYED not in reused.headers


def test_delete_with_a_replayed_key_does_not_delete_a_recreated_user(um):
    email, key = create_user(um), new_key()
    assert um.delete(f"/users/{email}", headers=key).status_code == 200
    create_user(um, email)
    replay = um.delete(f"/users/{email}", headers=key)
    assert replay.status_code == 200
    assert replay.headers[REPLAYED] == "true"
    assert um.get(f"/users/{email}").status_code == 200


@pytest.fixture
def secure_um_app(secure_stack, monkeypatch):
    """The User Manager's Flask app, bound to the database of the stack with authentication."""
    from user_manager.app import create_app

    variable = "USER_MANAGER_DATABASE_URL"
    monkeypatch.setenv(variable, secure_stack.stack.database_urls[variable])
    return create_app()


@pytest.mark.local_stack
def test_the_reaper_leaves_another_caller_s_live_key_of_the_same_value(secure_stack, secure_um_app):
    from user_manager.idempotency import reap_expired_keys

    um, keys = secure_stack.um, secure_stack.keys
    first, second = keys.header("all"), keys.header("all-but-ops")
    shared = new_key()
    # The first caller used the key a day ago; the second uses it now, to delete a user.
    assert um.post("/users", json=user_payload(), headers={**first, **shared}).status_code == 201
    run_sql(
        secure_stack.stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = %s",
        (shared["Idempotency-Key"],),
    )
    email = user_payload()["email"]
    assert um.post("/users", json=user_payload(email), headers={**second, **new_key()}).ok
    assert um.delete(f"/users/{email}", headers={**second, **shared}).status_code == 200

    with secure_um_app.app_context():
        reap_expired_keys(batch_size=100)

    # The first caller's key is gone: reused, it is a new key.
    reused = um.post("/users", json=user_payload(), headers={**first, **shared})
    assert reused.status_code == 201
    assert REPLAYED not in reused.headers
    # The second caller's is not: its retry replays, and leaves the account made since alone.
    assert um.post("/users", json=user_payload(email), headers={**second, **new_key()}).ok
    retry = um.delete(f"/users/{email}", headers={**second, **shared})
    assert retry.status_code == 200
    assert retry.headers.get(REPLAYED) == "true"
    assert um.get(f"/users/{email}", headers=second).status_code == 200

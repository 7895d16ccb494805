"""IBANs and tax codes only where they belong: masked in lists, gone with the user."""

import importlib.util
import json
import uuid
from pathlib import Path

from tests.integration.auth_support import bearer
from tests.utils import create_user, new_key, run_sql, user_payload

IBAN = "IT60X0542811101000000123456"


def tax_code() -> str:
    return f"TC{uuid.uuid4().hex[:14].upper()}"


def test_lists_mask_iban_and_tax_code_for_every_caller(um):
    body = user_payload(email=f"aaa.{uuid.uuid4().hex[:10]}@example.com", iban=IBAN)
    body["tax_code"] = tax_code()
    assert um.post("/users", json=body, headers=new_key()).status_code == 201
    page = um.get("/users", params={"limit": "1000"}).json()
    (listed,) = [user for user in page if user["email"] == body["email"]]
    assert listed["iban"] == "IT60…3456"
    assert listed["tax_code"] == body["tax_code"][:4] + "…" + body["tax_code"][-4:]
    # One user, with authentication off as the original flows expect: in full.
    assert um.get(f"/users/{body['email']}").json()["iban"] == IBAN


def test_one_user_shows_iban_and_tax_code_only_with_users_pii(secure_stack):
    um, keys = secure_stack.um, secure_stack.keys
    body = {**user_payload(iban=IBAN), "tax_code": tax_code()}
    assert um.post("/users", json=body, headers={**keys.header("all"), **new_key()}).ok
    path = f"/users/{body['email']}"
    masked = um.get(path, headers=keys.header("all-but-users:pii")).json()
    assert (masked["iban"], masked["tax_code"][-1]) == ("IT60…3456", body["tax_code"][-1])
    assert "…" in masked["tax_code"]
    full = um.get(path, headers=keys.header("all")).json()
    assert (full["iban"], full["tax_code"]) == (IBAN, body["tax_code"])


def test_a_delete_leaves_nothing_of_the_user_in_any_caller_s_stored_keys(secure_stack):
    um, keys = secure_stack.um, secure_stack.keys
    first, second = keys.header("all"), keys.header("all-but-ops")
    body = {
        **user_payload(iban=IBAN),
        "tax_code": tax_code(),
        "first_name": f"Ottavia{uuid.uuid4().hex[:8]}",
        "last_name": f"Serra{uuid.uuid4().hex[:8]}",
    }
    email, path = body["email"], f"/users/{body['email']}"
    created, conflict, deleted, not_found = new_key(), new_key(), new_key(), new_key()
    assert um.post("/users", json=body, headers={**first, **created}).status_code == 201
    assert um.post("/users", json=body, headers={**second, **conflict}).status_code == 409
    assert um.delete(path, headers={**second, **deleted}).status_code == 200
    assert um.delete(path, headers={**first, **not_found}).status_code == 404

    keys_used = [key["Idempotency-Key"] for key in (created, conflict, deleted, not_found)]
    stored = run_sql(
        secure_stack.stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "SELECT user_email, request_path, response_body FROM idempotency_keys WHERE key = ANY(%s)",
        (keys_used,),
    )
    assert len(stored) == 4
    for row in stored:
        assert row[0] is None
        for personal in (email, body["first_name"], body["last_name"], IBAN, body["tax_code"]):
            assert personal not in f"{row[1]} {row[2]}"

    # Replays answer as before, without the user, and do nothing again.
    replayed = um.post("/users", json=body, headers={**first, **created})
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == {"message": "User created successfully", "user": None}
    assert um.get(path, headers=first).status_code == 404
    assert um.post("/users", json=body, headers={**second, **conflict}).status_code == 409
    again = um.delete(path, headers={**second, **deleted})
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (200, "true")
    # A key stays bound to its request: another body with it is still refused.
    other = um.post("/users", json={**body, "first_name": "Other"}, headers={**first, **created})
    assert other.status_code == 422


def test_only_an_admin_is_told_that_a_tax_code_is_another_user_s(secure_stack):
    um, keys, idp = secure_stack.um, secure_stack.keys, secure_stack.idp
    taken = tax_code()
    registered = {**user_payload(), "tax_code": taken}
    assert um.post("/users", json=registered, headers={**keys.header("all"), **new_key()}).ok
    own = {**user_payload(), "tax_code": taken}
    token = idp.token(["users:read", "users:write"], email=own["email"], email_verified=True)

    def register(body: dict, credential: dict):
        return um.post("/users", json=body, headers={**credential, **new_key()})

    as_self = register(own, bearer(token))
    as_service = register(own, keys.header("all"))
    as_admin = register(own, keys.header("bound-admin"))
    assert register({**own, "tax_code": None}, bearer(token)).status_code == 201
    own_email_taken = register({**own, "tax_code": None}, bearer(token))

    # Without admin, a clash of tax codes reads exactly as the caller's own email taken.
    assert as_self.status_code == as_service.status_code == own_email_taken.status_code == 409
    assert as_self.json() == as_service.json() == {"error": "User already exists"}
    assert own_email_taken.json() == {"error": "User already exists"}
    assert as_admin.status_code == 409
    assert as_admin.json() == {"error": "tax_code is already registered to another user"}


def test_the_migration_clears_keys_stored_before_deletes_cleared_them(local_stack, um):
    migration = Path(__file__).parents[2] / (
        "user_manager/migrations/versions/0004_forget_deleted_users_in_keys.py"
    )
    spec = importlib.util.spec_from_file_location("forget_deleted_users", migration)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    database = local_stack.database_urls["USER_MANAGER_DATABASE_URL"]
    gone, kept = user_payload(iban=IBAN), create_user(um)
    user = {**gone, "tax_code": None, "created_at": "2026-12-01T10:00:00Z"}
    created = json.dumps({"message": "User created successfully", "user": user})
    caller = f"before-0004-{uuid.uuid4().hex[:8]}"
    # What older code left behind: a deleted user's create and delete, and a live user's create.
    rows = [
        ("created", 201, created, gone["email"], "POST", "/users"),
        (
            "deleted",
            200,
            '{"message": "User deleted successfully"}',
            gone["email"],
            "DELETE",
            f"/users/{gone['email']}",
        ),
        ("kept", 201, created.replace(gone["email"], kept), kept, "POST", "/users"),
    ]
    for key, code, body, email, method, path in rows:
        run_sql(
            database,
            "INSERT INTO idempotency_keys (caller, key, status, response_code, response_body, "
            "user_email, request_method, request_path, request_fingerprint) "
            "VALUES (%s, %s, 'completed', %s, %s, %s, %s, %s, 'f')",
            (caller, key, code, body, email, method, path),
        )

    run_sql(database, module.FORGET_DELETED_USERS)

    stored = {
        key: (email, path, json.loads(body))
        for key, email, path, body in run_sql(
            database,
            "SELECT key, user_email, request_path, response_body FROM idempotency_keys "
            "WHERE caller = %s",
            (caller,),
        )
    }
    assert stored["created"] == (None, "/users", {**json.loads(created), "user": None})
    assert stored["deleted"][:2] == (None, "/users/{email}")
    assert stored["kept"] == (kept, "/users", json.loads(created.replace(gone["email"], kept)))

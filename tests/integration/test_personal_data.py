"""IBANs and tax codes only where they belong: masked in lists, gone with the user."""

import uuid

import pytest

from tests.integration.auth_support import bearer
from tests.utils import new_key, run_sql, user_payload

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


@pytest.mark.local_stack
def test_the_stored_answer_of_a_create_loses_iban_and_tax_code_with_the_user(local_stack, um):
    body, key = {**user_payload(iban=IBAN), "tax_code": tax_code()}, new_key()
    created = um.post("/users", json=body, headers=key)
    assert created.json()["user"]["iban"] == IBAN
    assert um.delete(f"/users/{body['email']}", headers=new_key()).status_code == 200

    replay = um.post("/users", json=body, headers=key)
    assert replay.headers["Idempotent-Replayed"] == "true"
    user = replay.json()["user"]
    assert (user["iban"], user["tax_code"]) == (None, None)
    assert user["email"] == body["email"]
    stored = run_sql(
        local_stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "SELECT count(*) FROM idempotency_keys WHERE user_email = %s "
        "AND (response_body LIKE %s OR response_body LIKE %s)",
        (body["email"], f"%{IBAN}%", f"%{body['tax_code']}%"),
    )
    assert stored == [(0,)]


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

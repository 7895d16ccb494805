"""No secret, token, key, email, IBAN or tax code reaches a log line of any process.

The OpenSky client itself is checked at DEBUG level in tests/unit/test_log_secrets.py.
"""

import re
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from opensky_sim.control import SimulatorControl
from tests.utils import create_user, new_key, user_payload, wait_until
from user_manager.app import create_app as create_user_manager
from user_manager.models import db

pytestmark = pytest.mark.local_stack

ROLES = ("user_manager", "data_collector", "opensky_sim")


def unique_tax_code() -> str:
    return f"TX{uuid.uuid4().hex[:12].upper()}"


def test_no_process_logs_secrets_tokens_ibans_or_tax_codes(local_stack, um, dc):
    iban, tax_code = "GB82WEST12345698765432", unique_tax_code()
    body = user_payload(iban=iban, tax_code=tax_code)
    assert um.post("/users", json=body, headers=new_key()).status_code == 201
    assert um.get(f"/users/{body['email']}").json()["iban"] == iban
    # The tax code again (409), and a mistyped IBAN (400): error paths log too.
    taken = user_payload(tax_code=tax_code)
    assert um.post("/users", json=taken, headers=new_key()).status_code == 409
    mistyped = user_payload(iban="GB82WEST12345698765433", tax_code=unique_tax_code())
    assert um.post("/users", json=mistyped, headers=new_key()).status_code == 400
    # Following an airport makes the collector's worker log in to OpenSky (the simulator).
    sim = SimulatorControl(local_stack.simulator_url)
    tokens_before = sim.state()["tokens_issued"]
    email = create_user(um)
    assert dc.post("/interests", json={"email": email, "airport_code": "EDDM"}).status_code == 201
    wait_until(lambda: any(c["endpoint"] != "token" for c in sim.calls()), timeout=30)
    assert sim.state()["tokens_issued"] >= max(tokens_before, 1)
    wait_until(lambda: "GET /users/<email> 200" in local_stack.log_text("user_manager"))

    for role in ROLES:
        # A request id is the client's own header, echoed: the fuzzer (Hypothesis draws
        # strings from the code's literals, these tests' included) may send any of the
        # strings below as one.
        logs = re.sub(r"request_id=[^\]\s]*", "request_id=", local_stack.log_text(role))
        for secret in (
            local_stack.simulator_client_secret,
            "Bearer ",
            "access_token",
            iban,
            tax_code,
            body["email"],
            email,
        ):
            assert secret not in logs, f"{role} logged {secret!r}"
        assert mistyped["iban"] not in logs, role


def test_database_errors_do_not_quote_the_statement_s_parameters(local_stack, monkeypatch):
    # The central error handlers log database errors: their text must not carry the data.
    monkeypatch.setenv(
        "USER_MANAGER_DATABASE_URL", local_stack.database_urls["USER_MANAGER_DATABASE_URL"]
    )
    app = create_user_manager()
    too_long_iban = "IT60X0542811101000000123456" + "0" * 20
    with app.app_context(), pytest.raises(DBAPIError) as failure:
        db.session.execute(
            text(
                "INSERT INTO users (email, first_name, last_name, iban, created_at) "
                "VALUES (:email, 'Mario', 'Rossi', :iban, now())"
            ),
            {"email": f"{uuid.uuid4().hex}@example.com", "iban": too_long_iban},
        )
    assert "value too long" in str(failure.value)
    assert too_long_iban not in str(failure.value)


def test_with_auth_on_no_process_logs_emails_credentials_ibans_or_tax_codes(secure_stack):
    um, dc, keys = secure_stack.um, secure_stack.dc, secure_stack.keys
    admin = keys.header("bound-admin")
    iban, tax_code = "GB82WEST12345698765432", unique_tax_code()
    body = user_payload(iban=iban, tax_code=tax_code)
    assert um.post("/users", json=body, headers={**admin, **new_key()}).status_code == 201
    assert um.get(f"/users/{body['email']}", headers=admin).json()["iban"] == iban
    token = secure_stack.idp.token(["interests:write", "interests:read"], email=body["email"])
    bearer = {"Authorization": f"Bearer {token}"}
    interest = {"email": body["email"], "airport_code": "EDDM"}
    added = dc.post("/interests", json=interest, headers=bearer)
    assert added.status_code == 201, added.text
    assert dc.get(f"/interests/{body['email']}", headers=bearer).status_code == 200
    assert um.get("/users", headers={"X-API-Key": "not-a-key-" + iban}).status_code == 401
    assert um.delete(f"/users/{body['email']}", headers={**admin, **new_key()}).status_code == 200
    stack = secure_stack.stack
    wait_until(lambda: "DELETE /users/<email> 200" in stack.log_text("user_manager"))

    for role in ROLES:
        logs = re.sub(r"request_id=[^\]\s]*", "request_id=", stack.log_text(role))
        for secret in (iban, tax_code, body["email"], token, *keys.keys.values()):
            assert secret not in logs, f"{role} logged {secret!r}"

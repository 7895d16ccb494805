"""The User Manager's REST API, and the gRPC question it answers."""

import uuid

import grpc
import pytest

from common.rpc.generated import flight_tracker_pb2, flight_tracker_pb2_grpc
from tests.utils import create_user, new_key, unique_email, user_payload

REPLAYED = "Idempotent-Replayed"


# The four idempotency scenarios of POST /users: a first request, the same request with the
# same key, a new key for a user that exists, no key.


def test_scenario_1_first_request_creates_the_user(um):
    tax_code = "TC" + uuid.uuid4().hex[:14].upper()
    body = user_payload(tax_code=tax_code, iban="IT60X0542811101000000123456")
    response = um.post("/users", json=body, headers=new_key())

    assert response.status_code == 201
    assert response.json()["message"] == "User created successfully"
    assert REPLAYED not in response.headers
    stored = um.get(f"/users/{body['email']}").json()
    assert stored["tax_code"] == tax_code
    assert stored["iban"] == "IT60X0542811101000000123456"


def test_scenario_2_same_key_replays_the_201_without_a_second_user(um):
    body, key = user_payload(), new_key()
    first = um.post("/users", json=body, headers=key)
    again = um.post("/users", json=body, headers=key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers[REPLAYED] == "true"


def test_scenario_3_existing_user_with_a_new_key_is_a_409_and_is_cached(um):
    email = create_user(um)
    key = new_key()
    conflict = um.post("/users", json=user_payload(email), headers=key)
    assert conflict.status_code == 409
    assert conflict.json() == {"error": "User already exists"}

    replay = um.post("/users", json=user_payload(email), headers=key)
    assert replay.status_code == 409
    assert replay.headers[REPLAYED] == "true"


def test_scenario_4_request_without_key_is_a_400_naming_the_header(um):
    response = um.post("/users", json=user_payload())
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]


# The same four scenarios for DELETE /users/<email>.


def test_delete_scenario_1_first_request_deletes_the_user(um):
    email = create_user(um)
    response = um.delete(f"/users/{email}", headers=new_key())
    assert response.status_code == 200
    assert response.json() == {"message": "User deleted successfully"}
    assert um.get(f"/users/{email}").status_code == 404


def test_delete_scenario_2_same_key_replays_the_200(um):
    email, key = create_user(um), new_key()
    first = um.delete(f"/users/{email}", headers=key)
    again = um.delete(f"/users/{email}", headers=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers[REPLAYED] == "true"
    assert again.json() == first.json()


def test_delete_scenario_3_unknown_user_with_a_new_key_is_a_cached_404(um):
    email, key = create_user(um), new_key()
    assert um.delete(f"/users/{email}", headers=new_key()).status_code == 200

    missing = um.delete(f"/users/{email}", headers=key)
    assert missing.status_code == 404
    assert missing.json() == {"error": "User not found"}
    # Even once the user exists again, the key keeps its first answer.
    create_user(um, email)
    replay = um.delete(f"/users/{email}", headers=key)
    assert replay.status_code == 404
    assert replay.headers[REPLAYED] == "true"
    assert um.get(f"/users/{email}").status_code == 200


def test_delete_scenario_4_request_without_key_is_a_400_and_deletes_nothing(um):
    email = create_user(um)
    response = um.delete(f"/users/{email}")
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]
    assert um.get(f"/users/{email}").status_code == 200


# Identity, reads and the remaining endpoints.


def test_email_identity_is_case_insensitive(um):
    name = unique_email("Mario.Rossi").replace("example.com", "Example.COM")
    created = um.post("/users", json=user_payload(name), headers=new_key())
    assert created.status_code == 201
    assert created.json()["user"]["email"] == name.lower()

    duplicate = um.post("/users", json=user_payload(name.lower()), headers=new_key())
    assert duplicate.status_code == 409
    assert um.get(f"/users/{name.upper()}").json()["email"] == name.lower()
    assert um.delete(f"/users/{name.upper()}", headers=new_key()).status_code == 200
    assert um.get(f"/users/{name.lower()}").status_code == 404


def test_get_user_returns_every_field_with_a_utc_timestamp(um):
    code = uuid.uuid4().hex[:8]
    body = user_payload(first_name="Anna", last_name="Bianchi", tax_code=f"ab-{code}")
    create_user(um, **body)
    user = um.get(f"/users/{body['email']}").json()
    assert user == {
        "email": body["email"],
        "first_name": "Anna",
        "last_name": "Bianchi",
        "tax_code": f"AB{code.upper()}",
        "iban": None,
        "created_at": user["created_at"],
    }
    assert user["created_at"].endswith("Z")


def test_unknown_user_is_a_404_and_malformed_path_email_a_400(um):
    missing = um.get(f"/users/{unique_email()}")
    assert missing.status_code == 404
    assert missing.json() == {"error": "User not found"}

    malformed = um.get("/users/not-an-email")
    assert malformed.status_code == 400
    assert "email" in malformed.json()["details"]
    assert um.delete("/users/not-an-email", headers=new_key()).status_code == 400


def test_ping_and_unknown_routes_and_methods_answer_json(um):
    assert um.get("/ping").json() == {"message": "pong"}
    assert um.get("/nowhere").status_code == 404
    assert "error" in um.get("/nowhere").json()
    wrong_method = um.request("PUT", "/users")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()


def test_health_reports_database_peer_and_outbox_backlog(um):
    response = um.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["database"] == "ok"
    assert health["peer"]["service"] == "data_collector"
    assert health["peer"]["status"] == "ok"
    assert isinstance(health["outbox"]["backlog"], int)
    assert "oldest_pending_seconds" in health["outbox"]


@pytest.mark.local_stack
def test_grpc_check_user_exists_answers_for_the_normalized_email(local_stack, um):
    email = create_user(um)
    port = local_stack.settings.user_manager_grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = flight_tracker_pb2_grpc.UserServiceStub(channel)

        def exists(address: str) -> bool:
            request = flight_tracker_pb2.UserRequest(email=address)
            return stub.CheckUserExists(request, timeout=5).exists

        assert exists(email)
        assert exists(email.upper())
        assert not exists(unique_email())
        assert not exists("not an email")

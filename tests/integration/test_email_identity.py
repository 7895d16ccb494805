"""Two different addresses never reach one account: look-alike spellings are refused everywhere.

An identity provider may hold ``kate@example.com`` and the same address spelled
with a KELVIN SIGN as two people; each spelling below once reached the plain
one's account (lower-casing with Unicode's rules folded it in). Every way an
address comes in is tried: REST bodies, paths and query strings, gRPC
requests, and the email claim of a bearer token.
"""

import uuid
from urllib.parse import quote

import grpc
import pytest

from common.rpc.generated import flight_tracker_pb2, flight_tracker_pb2_grpc
from tests.integration.auth_support import bearer
from tests.utils import new_key, run_sql, user_payload

IBAN = "IT60X0542811101000000123456"
# A plain address's letter, and a character Unicode folds into it.
LOOK_ALIKES = {
    "kelvin sign": ("k", "\u212a"),
    "long s": ("s", "\u017f"),
    "dotless i": ("i", "\u0131"),
    "full-width k": ("k", "\uff4b"),
}


def victim_and_look_alike(letter: str, other: str) -> tuple[str, str]:
    """A fresh plain address starting with ``letter``, and the same spelled with ``other``."""
    rest = f"ate-{uuid.uuid4().hex[:10]}@example.com"
    return letter + rest, other + rest


def create_victim(um, email: str, headers=None) -> None:
    body = {**user_payload(email, iban=IBAN), "tax_code": f"TC{uuid.uuid4().hex[:14].upper()}"}
    created = um.post("/users", json=body, headers={**(headers or {}), **new_key()})
    assert created.status_code == 201, created.text


@pytest.mark.parametrize("kind", LOOK_ALIKES)
def test_a_look_alike_address_is_refused_by_every_route_and_reaches_nobody(um, dc, kind):
    victim, look_alike = victim_and_look_alike(*LOOK_ALIKES[kind])
    create_victim(um, victim)
    assert dc.post("/interests", json={"email": victim, "airport_code": "LIRF"}).status_code == 201
    path = quote(look_alike, safe="@")
    answers = [
        um.get(f"/users/{path}"),
        um.post("/users", json=user_payload(look_alike), headers=new_key()),
        um.delete(f"/users/{path}", headers=new_key()),
        dc.get(f"/interests/{path}"),
        dc.post("/interests", json={"email": look_alike, "airport_code": "EGLL"}),
        dc.delete("/interests", json={"email": look_alike, "airport_code": "LIRF"}),
        dc.get("/flights", params={"email": look_alike}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert IBAN not in answer.text
        assert "folds into" in answer.text
    assert um.get(f"/users/{victim}").json()["iban"] == IBAN
    assert [i["airport_code"] for i in dc.get(f"/interests/{victim}").json()] == ["LIRF"]


@pytest.mark.local_stack
def test_grpc_peers_never_take_a_look_alike_for_the_user(local_stack, um, dc):
    victim, look_alike = victim_and_look_alike(*LOOK_ALIKES["kelvin sign"])
    create_victim(um, victim)
    assert dc.post("/interests", json={"email": victim, "airport_code": "LIRF"}).status_code == 201
    ports = local_stack.settings
    with grpc.insecure_channel(f"127.0.0.1:{ports.user_manager_grpc_port}") as channel:
        users = flight_tracker_pb2_grpc.UserServiceStub(channel)
        asked = flight_tracker_pb2.UserRequest(email=look_alike)
        assert users.CheckUserExists(asked, timeout=5).exists is False
    with grpc.insecure_channel(f"127.0.0.1:{ports.data_collector_grpc_port}") as channel:
        interests = flight_tracker_pb2_grpc.DataCollectorServiceStub(channel)
        asked = flight_tracker_pb2.UserRequest(email=look_alike)
        assert interests.DeleteUserInterests(asked, timeout=5).deleted_count == 0
    assert [i["airport_code"] for i in dc.get(f"/interests/{victim}").json()] == ["LIRF"]


@pytest.mark.local_stack
def test_an_address_stored_under_older_rules_still_exists_for_the_peer(local_stack):
    # Earlier code stored look-alikes lower-cased as given; the Data Collector keeps asking
    # about them, and a "no" would make its reconciliation delete their interests.
    legacy = f"\u017fam-{uuid.uuid4().hex[:10]}@example.com"
    run_sql(
        local_stack.database_urls["USER_MANAGER_DATABASE_URL"],
        "INSERT INTO users (email, first_name, last_name) VALUES (%s, 'Old', 'Row')",
        (legacy,),
    )
    port = local_stack.settings.user_manager_grpc_port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        users = flight_tracker_pb2_grpc.UserServiceStub(channel)
        asked = flight_tracker_pb2.UserRequest(email=legacy)
        assert users.CheckUserExists(asked, timeout=5).exists is True


@pytest.mark.parametrize("kind", LOOK_ALIKES)
def test_a_token_for_a_look_alike_address_reads_nobodys_personal_data(secure_stack, kind):
    um, keys, idp = secure_stack.um, secure_stack.keys, secure_stack.idp
    victim, look_alike = victim_and_look_alike(*LOOK_ALIKES[kind])
    create_victim(um, victim, keys.header("all"))
    token = bearer(idp.token(["users:read", "users:pii"], email=look_alike))
    for path in (f"/users/{victim}", f"/users/{quote(look_alike, safe='@')}"):
        answer = um.get(path, headers=token)
        assert answer.status_code == 401, answer.text
        assert IBAN not in answer.text

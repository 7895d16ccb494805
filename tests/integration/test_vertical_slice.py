"""The foundation's slice through real processes: REST, gRPC both ways, PostgreSQL."""

from tests.utils import create_user, new_key, unique_email


def test_both_services_answer_ping(um, dc):
    assert um.get("/ping").json() == {"message": "pong"}
    assert dc.get("/ping").json() == {"message": "pong"}


def test_created_user_can_be_read_back(um):
    email = create_user(um, first_name="Anna", last_name="Bianchi")
    response = um.get(f"/users/{email}")
    assert response.status_code == 200
    user = response.json()
    assert (user["email"], user["first_name"], user["last_name"]) == (email, "Anna", "Bianchi")
    assert user["created_at"].endswith("Z")


def test_interest_is_accepted_only_for_a_user_the_user_manager_knows(um, dc):
    email = create_user(um)
    added = dc.post("/interests", json={"email": email, "airport_code": "LIRF"})
    assert added.status_code == 201
    assert added.json() == {"message": "Interest added and data fetch initiated"}

    stranger = dc.post("/interests", json={"email": unique_email(), "airport_code": "LIRF"})
    assert stranger.status_code == 404
    assert "error" in stranger.json()


def test_deleting_a_user_deletes_their_interests_over_grpc(um, dc):
    email = create_user(um)
    for airport in ("LIRF", "LIMC"):
        assert dc.post("/interests", json={"email": email, "airport_code": airport}).ok
    assert {i["airport_code"] for i in dc.get(f"/interests/{email}").json()} == {"LIRF", "LIMC"}

    deleted = um.delete(f"/users/{email}", headers=new_key())
    assert deleted.status_code == 200
    # The call to DeleteUserInterests happens before DELETE answers.
    assert dc.get(f"/interests/{email}").json() == []
    assert um.get(f"/users/{email}").status_code == 404

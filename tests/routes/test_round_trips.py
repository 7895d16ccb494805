"""Each user write reaches PostgreSQL in one round trip: what a busy User Manager's rate rests on.

A statement run on a connection outside autocommit costs two more round
trips (psycopg2's BEGIN before it, COMMIT or ROLLBACK after), so the count
here is of statements and of whether each ran in autocommit.
"""

import pytest
from sqlalchemy import event

from tests.utils import new_key, unique_email, user_payload


@pytest.fixture
def statements(um_app):
    """Record (SQL, autocommit) for every statement the User Manager app sends."""
    from user_manager.models import db

    with um_app.app_context():
        engine = db.engine
    sent: list[tuple[str, bool]] = []

    def record(conn, _cursor, statement, _parameters, _context, _executemany):
        sent.append((statement, conn.connection.dbapi_connection.autocommit))

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def test_a_create_and_its_replay_are_one_autocommitted_round_trip_each(um_client, statements):
    payload, key = user_payload(unique_email()), new_key()

    assert um_client.post("/users", json=payload, headers=key).status_code == 201
    created = list(statements)
    statements.clear()
    replay = um_client.post("/users", json=payload, headers=key)

    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert [autocommit for _, autocommit in created] == [True]
    assert [autocommit for _, autocommit in statements] == [True]
    assert "pg_advisory_xact_lock" in created[0][0]


def test_a_conflict_is_stored_and_replayed_in_autocommit(um_client, statements):
    payload = user_payload(unique_email())
    assert um_client.post("/users", json=payload, headers=new_key()).status_code == 201
    conflict_key = new_key()

    conflict = um_client.post("/users", json=payload, headers=conflict_key)
    replayed = um_client.post("/users", json=payload, headers=conflict_key)

    assert conflict.status_code == 409
    assert replayed.status_code == 409
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert all(autocommit for _, autocommit in statements)


def test_reading_a_user_is_one_autocommitted_statement(um_client, statements):
    email = unique_email()
    assert um_client.post("/users", json=user_payload(email), headers=new_key()).status_code == 201
    statements.clear()

    assert um_client.get(f"/users/{email}").status_code == 200
    assert [autocommit for _, autocommit in statements] == [True]

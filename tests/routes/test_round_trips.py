"""Each user write reaches PostgreSQL in one round trip: what a busy User Manager's rate rests on.

A statement run on a connection outside autocommit costs two more round
trips (psycopg2's BEGIN before it, COMMIT or ROLLBACK after), so the count
here is of statements and of whether each ran in autocommit. A write's one
statement is a message of several (lock, claim, work, complete, replay),
which PostgreSQL runs as one transaction.
"""

import json

import pytest
from sqlalchemy import event

from tests.utils import new_key, run_sql, unique_email, user_payload


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


def one_autocommitted_write(sent: list[tuple[str, bool]], work: str) -> bool:
    """Tell whether ``sent`` is exactly one autocommitted message holding the lock and ``work``."""
    return (
        len(sent) == 1
        and sent[0][1]
        and "pg_advisory_xact_lock" in sent[0][0]
        and work in sent[0][0]
    )


def test_a_create_and_its_replay_are_one_autocommitted_round_trip_each(um_client, statements):
    payload, key = user_payload(unique_email()), new_key()

    assert um_client.post("/users", json=payload, headers=key).status_code == 201
    created = list(statements)
    statements.clear()
    replay = um_client.post("/users", json=payload, headers=key)

    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert one_autocommitted_write(created, "INSERT INTO users")
    assert one_autocommitted_write(statements, "INSERT INTO users")


def test_a_conflict_and_its_replay_are_one_autocommitted_round_trip_each(um_client, statements):
    payload = user_payload(unique_email())
    assert um_client.post("/users", json=payload, headers=new_key()).status_code == 201
    conflict_key = new_key()
    statements.clear()

    conflict = um_client.post("/users", json=payload, headers=conflict_key)
    conflicted = list(statements)
    statements.clear()
    replayed = um_client.post("/users", json=payload, headers=conflict_key)

    assert conflict.status_code == 409
    assert replayed.status_code == 409
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert one_autocommitted_write(conflicted, "INSERT INTO users")
    assert one_autocommitted_write(statements, "INSERT INTO users")


def test_a_refused_create_is_one_autocommitted_round_trip(um_client, statements, local_stack):
    email = unique_email()
    database = local_stack.database_urls["USER_MANAGER_DATABASE_URL"]
    # A deletion of this email's interests still waits in the outbox (the collector is
    # "down"): the create must wait for it, and stores nothing meanwhile.
    run_sql(
        database,
        "INSERT INTO outbox (method, payload, next_attempt_at) "
        "VALUES ('DeleteUserInterests', %s, now() + interval '1 hour')",
        (json.dumps({"email": email}),),
    )
    key = new_key()
    try:
        refused = um_client.post("/users", json=user_payload(email), headers=key)
    finally:
        run_sql(database, "DELETE FROM outbox WHERE payload ->> 'email' = %s", (email,))

    assert refused.status_code == 409
    assert refused.headers["Retry-After"]
    assert one_autocommitted_write(statements, "INSERT INTO users")
    stored = "SELECT count(*) FROM idempotency_keys WHERE key = %s"
    assert run_sql(database, stored, (key["Idempotency-Key"],)) == [(0,)]


def test_a_delete_is_one_autocommitted_round_trip_then_its_delivery(um_client, statements):
    email = unique_email()
    assert um_client.post("/users", json=user_payload(email), headers=new_key()).status_code == 201
    key = new_key()
    statements.clear()

    assert um_client.delete(f"/users/{email}", headers=key).status_code == 200
    write, *delivery = statements
    statements.clear()
    replay = um_client.delete(f"/users/{email}", headers=key)

    assert one_autocommitted_write([write], "DELETE FROM users")
    # Then, committed, the request hands the outbox message to the collector itself.
    assert delivery and all("outbox" in statement for statement, _ in delivery)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert one_autocommitted_write(statements, "DELETE FROM users")


def test_reading_a_user_is_one_autocommitted_statement(um_client, statements):
    email = unique_email()
    assert um_client.post("/users", json=user_payload(email), headers=new_key()).status_code == 201
    statements.clear()

    assert um_client.get(f"/users/{email}").status_code == 200
    assert [autocommit for _, autocommit in statements] == [True]

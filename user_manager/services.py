"""User Manager business logic: creating, deleting and reading users.

The two writes go route -> here -> :mod:`user_manager.idempotency`, which
runs each at most once per ``Idempotency-Key`` and sends it to PostgreSQL
in one round trip with the key's phases around it (lock the email, claim
the key, then the work below, complete the key, replay). Each write's work
is one piece of SQL below: it decides the answer under the email's lock,
records it on the key this request claimed, and does what the answer says.
:func:`create_user` inserts the user; :func:`delete_user` deletes the user
and queues the deletion of their interests in the Data Collector (the
outbox), then delivers it right after the commit.
"""

import json

from flask import current_app
from sqlalchemy import bindparam, select

from common.db.connections import autocommit_connection, autocommit_statements
from common.emails import lookup_form
from common.rpc.peers import InterestsPeer
from common.timeutil import isoformat_utc_sql, utc_now
from common.web.auth import Caller
from common.web.errors import ApiError
from common.web.pagination import json_item_rows
from user_manager import outbox, privacy
from user_manager.idempotency import KeyedRequest, Outcome, Write, run_once
from user_manager.inputs import UserCreate
from user_manager.models import User, db, user_to_dict

USERS = User.__table__
USER_EXISTS = {"error": "User already exists"}
TAX_CODE_TAKEN = {"error": "tax_code is already registered to another user"}
USER_NOT_FOUND = {"error": "User not found"}
USER_DELETED = {"message": "User deleted successfully"}
STILL_BEING_DELETED = ApiError(
    409,
    "A previous account with this email is still being deleted; try again shortly.",
    headers={"Retry-After": "10"},
)


def data_collector() -> InterestsPeer:
    """Return this app's gRPC client of the Data Collector (one channel per process)."""
    return current_app.extensions["data_collector"]


def health_facts() -> dict:
    """Return the ``outbox`` part of ``/health``: undelivered calls and the oldest one's age."""
    return outbox.health_facts()


# POST /users. 409 when the email or the tax code is taken (create_user picks the answers:
# only admins are told which of the two). No answer (a refusal: nothing is stored) while
# the interests of a previous account with this email still wait in the outbox to be
# deleted, or that late delivery would delete the new account's. Else 201, and the user
# is inserted.
CREATE_USER = Write.of(
    """
WITH verdict AS (
    SELECT CASE
        WHEN EXISTS (SELECT FROM users WHERE email = %(subject)s) THEN 'email taken'
        WHEN EXISTS (
            SELECT FROM outbox
            WHERE method = 'DeleteUserInterests' AND payload ->> 'email' = %(subject)s
        ) THEN 'previous account still being deleted'
        WHEN EXISTS (SELECT FROM users WHERE tax_code = %(tax_code)s) THEN 'tax code taken'
        ELSE 'created'
    END AS outcome
),
answer AS (
    UPDATE idempotency_keys SET
        response_code = CASE outcome
            WHEN 'created' THEN 201
            WHEN 'email taken' THEN 409
            WHEN 'tax code taken' THEN 409
            WHEN 'previous account still being deleted' THEN NULL
        END,
        response_body = CASE outcome
            WHEN 'created' THEN %(created_body)s
            WHEN 'email taken' THEN %(email_taken_body)s
            WHEN 'tax code taken' THEN %(tax_code_taken_body)s
        END
    FROM verdict
    WHERE caller = %(caller)s AND key = %(key)s AND status = 'in-progress'
    RETURNING response_code
)
INSERT INTO users (email, first_name, last_name, tax_code, iban, created_at)
SELECT %(subject)s, %(first_name)s, %(last_name)s, %(tax_code)s, %(iban)s, %(created_at)s
FROM answer
WHERE response_code = 201
""",
    refusal=STILL_BEING_DELETED,
)


def create_user(*, data: UserCreate, key: str, caller: Caller) -> Outcome:
    """Insert the user at most once per key, or answer 409 when the email or tax code is taken.

    The key belongs to ``caller``. A caller may learn that the email it
    registers exists (it may act for that user), but whose tax code is
    whose is other users' business: without ``admin``, a tax code taken
    answers exactly as the email taken does, naming no field.
    """
    row = {**data.model_dump(), "created_at": utc_now()}
    created = {"message": "User created successfully", "user": user_to_dict(row)}
    tax_code_taken = TAX_CODE_TAKEN if caller.has("admin") else USER_EXISTS
    return run_once(
        CREATE_USER,
        KeyedRequest(key, "POST", "/users", data.model_dump(), data.email, caller.identity),
        {
            **row,
            "created_body": json.dumps(created),
            "email_taken_body": json.dumps(USER_EXISTS),
            "tax_code_taken_body": json.dumps(tax_code_taken),
        },
    )


# DELETE /users/<email>. 404 when there is no such user. Else 200: the user is deleted, and
# the deletion of their interests queued in the outbox (delivered by delete_user right after
# the commit, else by the relay). Then, as no user has this email any more, no stored key
# keeps anything of it, whichever caller's: no user in a create's answer (its replay
# answers 201 with "user": null, and creates nothing), no email in a delete's path nor in
# user_email (which only finds a user's keys when the user is deleted). The fingerprint
# stays: a key reused for another request must still be refused. This request's own key
# is left alone when an earlier request completed it: rewritten here, it would read as
# answered by this request, which would then get that earlier answer instead of a 422.
DELETE_USER = Write.of(
    """
WITH answer AS (
    UPDATE idempotency_keys SET
        response_code = CASE WHEN found THEN 200 ELSE 404 END,
        response_body = CASE WHEN found THEN %(deleted_body)s ELSE %(not_found_body)s END
    FROM (SELECT EXISTS (SELECT FROM users WHERE email = %(subject)s) AS found) AS verdict
    WHERE caller = %(caller)s AND key = %(key)s AND status = 'in-progress'
    RETURNING response_code
),
deleted AS (
    DELETE FROM users
    WHERE email = %(subject)s AND EXISTS (SELECT FROM answer WHERE response_code = 200)
    RETURNING email
)
INSERT INTO outbox (method, payload, attempts, next_attempt_at)
SELECT 'DeleteUserInterests', jsonb_build_object('email', email), 0, now() + %(handoff)s
FROM deleted;

UPDATE idempotency_keys SET
    response_body = CASE WHEN response_code = 201
        THEN (response_body::jsonb || '{"user": null}')::text ELSE response_body END,
    request_path = CASE WHEN request_method = 'DELETE'
        THEN '/users/{email}' ELSE request_path END,
    user_email = NULL
WHERE user_email = %(subject)s
    AND NOT EXISTS (SELECT FROM users WHERE email = %(subject)s)
    AND NOT (caller = %(caller)s AND key = %(key)s AND status = 'completed')
""",
)


def delete_user(*, email: str, key: str, caller: Caller) -> Outcome:
    """Delete the user and their interests in the Data Collector, at most once per key.

    The key belongs to ``caller``.
    """
    outcome = run_once(
        DELETE_USER,
        KeyedRequest(key, "DELETE", f"/users/{email}", None, email, caller.identity),
        {
            "handoff": outbox.handoff(),
            "deleted_body": json.dumps(USER_DELETED),
            "not_found_body": json.dumps(USER_NOT_FOUND),
        },
    )
    if outcome.status == 200 and not outcome.replayed:
        # Committed: now deliver it to the collector ourselves; what fails is the relay's job.
        outbox.deliver_interest_deletion(email=email, peer=data_collector())
    return outcome


# Reads are prebuilt Core statements on the table: no ORM identity map, no per-request
# statement construction.
GET_USER = select(USERS).where(USERS.c.email == bindparam("email"))
USER_EXISTS_QUERY = select(USERS.c.email).where(USERS.c.email == bindparam("email"))


def _users_page(*, after: bool):
    """Build a page query whose rows are (item: the user's JSON built by PostgreSQL, email)."""
    page = select(USERS).order_by(USERS.c.email).limit(bindparam("limit"))
    if after:
        page = page.where(USERS.c.email > bindparam("after"))
    page = page.subquery("page")
    fields = [
        page.c.email,
        page.c.first_name,
        page.c.last_name,
        privacy.masked_sql(page.c.tax_code).label("tax_code"),
        privacy.masked_sql(page.c.iban).label("iban"),
        isoformat_utc_sql(page.c.created_at).label("created_at"),
    ]
    return json_item_rows(page, fields, keys=[page.c.email], order_by=[page.c.email])


FIRST_USERS = _users_page(after=False)
USERS_AFTER = _users_page(after=True)


def get_user(*, email: str, with_pii: bool) -> dict | None:
    """Return the user with this (normalized) email as public JSON, if any.

    ``with_pii``: the IBAN and tax code in full; else masked.
    """
    autocommit_statements(db)
    row = db.session.execute(GET_USER, {"email": email}).first()
    if row is None:
        return None
    user = user_to_dict(row)
    return user if with_pii else privacy.masked_user(user)


def list_users(*, after_email: str | None, limit: int) -> list:
    """Return up to ``limit`` users ordered by email, strictly after ``after_email``.

    Each row holds ``item``, the user's public JSON (built by PostgreSQL, as
    :func:`user_to_dict` shapes it, the IBAN and tax code masked for every
    caller), and ``email``, the sort key.
    """
    autocommit_statements(db)
    connection = db.session.connection()
    if after_email is None:
        return connection.execute(FIRST_USERS, {"limit": limit}).all()
    return connection.execute(USERS_AFTER, {"limit": limit, "after": after_email}).all()


def user_exists(*, email: str) -> bool:
    """Answer the gRPC CheckUserExists question for any string (an address as stored)."""
    normalized = lookup_form(email)
    # Without the ORM session: every interest added and every per-user page of the Data
    # Collector asks this.
    with autocommit_connection(db) as connection:
        return connection.execute(USER_EXISTS_QUERY, {"email": normalized}).first() is not None

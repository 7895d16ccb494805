"""User Manager business logic: creating, deleting and reading users.

The two writes go route -> here -> :mod:`user_manager.idempotency`, which
runs each at most once per ``Idempotency-Key``. Each write is defined below,
once, as the answer it predicts and the work it does, in SQL built at
import: :func:`create_user` inserts the user; :func:`delete_user` deletes the
user and queues the deletion of their interests in the Data Collector (the
outbox), then delivers it right after the commit.
"""

import json

from flask import current_app
from sqlalchemy import bindparam, case, delete, literal, null, select, update
from sqlalchemy.dialects.postgresql import insert

from common.db.connections import autocommit_connection, autocommit_statements
from common.emails import lookup_form
from common.rpc.peers import InterestsPeer
from common.timeutil import isoformat_utc_sql, utc_now
from common.web.errors import ApiError
from common.web.pagination import json_item_rows
from user_manager import idempotency, outbox, privacy
from user_manager.idempotency import KEYS, SUBJECT, KeyedRequest, Outcome
from user_manager.inputs import UserCreate
from user_manager.models import User, db, user_to_dict

USERS = User.__table__
USER_FIELDS = ("email", "first_name", "last_name", "tax_code", "iban", "created_at")
USER_EXISTS = {"error": "User already exists"}
TAX_CODE_TAKEN = {"error": "tax_code is already registered to another user"}
USER_NOT_FOUND = {"error": "User not found"}
USER_DELETED = {"message": "User deleted successfully"}


def data_collector() -> InterestsPeer:
    """Return this app's gRPC client of the Data Collector (one channel per process)."""
    return current_app.extensions["data_collector"]


# POST /users: 409 when the email or the tax code is taken; refused (nothing stored) while
# the interests of a previous account with this email still wait in the outbox to be
# deleted, or that late delivery would delete the new account's; else 201 and the INSERT.
_email_taken = select(USERS.c.email).where(USERS.c.email == SUBJECT).exists()
_tax_code_taken = select(USERS.c.email).where(USERS.c.tax_code == bindparam("tax_code")).exists()
_CREATE_CLAIM = idempotency.claim(
    status=case(
        (_email_taken, literal(409)),
        (outbox.interest_deletion_pending(SUBJECT), null()),
        (_tax_code_taken, literal(409)),
        else_=literal(201),
    ),
    body=case(
        (_email_taken, literal(json.dumps(USER_EXISTS))),
        (_tax_code_taken, literal(json.dumps(TAX_CODE_TAKEN))),
        else_=bindparam("created_body"),
    ),
)
CREATE_USER = idempotency.build_write(
    _CREATE_CLAIM,
    work=[
        insert(USERS)
        .from_select(
            list(USER_FIELDS),
            select(SUBJECT, *(bindparam(name) for name in USER_FIELDS[1:])).where(
                _CREATE_CLAIM.made_with(201)
            ),
        )
        .cte("created")
    ],
)
STILL_BEING_DELETED = ApiError(
    409,
    "A previous account with this email is still being deleted; try again shortly.",
    headers={"Retry-After": "10"},
)


def create_user(*, data: UserCreate, key: str, caller: str) -> Outcome:
    """Insert the user at most once per key, or answer 409 when the email or tax code is taken.

    ``caller`` is the identity the key belongs to ('' when authentication is off).
    """
    row = {**data.model_dump(), "created_at": utc_now()}
    created = {"message": "User created successfully", "user": user_to_dict(row)}
    return idempotency.run_once(
        CREATE_USER,
        KeyedRequest(key, "POST", "/users", data.model_dump(), data.email, caller),
        {**row, "created_body": json.dumps(created)},
        refusal=STILL_BEING_DELETED,
    )


# DELETE /users/<email>: 404 when there is no such user; else 200, the DELETE, the
# deletion of the user's interests queued in the outbox, and the IBAN and tax code gone
# from the stored answers of the user's creation (replayed to a repeated POST).
_DELETE_CLAIM = idempotency.claim(
    status=case((_email_taken, literal(200)), else_=literal(404)),
    body=case(
        (_email_taken, literal(json.dumps(USER_DELETED))),
        else_=literal(json.dumps(USER_NOT_FOUND)),
    ),
)
_deleted = (
    delete(USERS)
    .where(USERS.c.email == SUBJECT, _DELETE_CLAIM.made_with(200))
    .returning(USERS.c.email)
    .cte("deleted")
)
_queued = outbox.enqueue_interest_deletion(_deleted)
_scrubbed = (
    update(KEYS)
    .where(
        KEYS.c.user_email == SUBJECT,
        KEYS.c.request_method == "POST",
        KEYS.c.response_code == 201,
        _DELETE_CLAIM.made_with(200),
    )
    .values(response_body=privacy.without_pii_sql(KEYS.c.response_body))
    .cte("scrubbed")
)
DELETE_USER = idempotency.build_write(
    _DELETE_CLAIM,
    work=[_deleted, _queued, _scrubbed],
    outbox_id=select(_queued.c.id).scalar_subquery(),
)


def delete_user(*, email: str, key: str, caller: str) -> Outcome:
    """Delete the user and their interests in the Data Collector, at most once per key."""
    outcome = idempotency.run_once(
        DELETE_USER,
        KeyedRequest(key, "DELETE", f"/users/{email}", None, email, caller),
        {"handoff": outbox.handoff()},
    )
    if outcome.outbox_id is not None:
        # Committed: now try the collector ourselves; what fails is the relay's job.
        outbox.deliver(message_id=outcome.outbox_id, peer=data_collector())
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

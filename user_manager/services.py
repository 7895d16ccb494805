"""User Manager business logic: the rules a user must satisfy, and user storage.

Writes run inside :func:`user_manager.idempotency.execute_once` (or
``insert_once``), which owns the transaction: the functions here never
commit, so the user row, the idempotency key and any outbox message commit
together or not at all.
"""

import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from sqlalchemy import bindparam, delete, select

from common.db_connections import autocommit_statements
from common.errors import ApiError
from common.pagination import json_item_rows
from common.timeutil import isoformat_utc_sql, utc_now
from common.validation import normalize_email
from user_manager import idempotency, outbox
from user_manager.idempotency import Outcome
from user_manager.models import (
    IBAN_MAX_LENGTH,
    NAME_MAX_LENGTH,
    TAX_CODE_MAX_LENGTH,
    User,
    db,
    user_to_dict,
)

# Tax identifiers are printed with spaces, dots, hyphens or slashes between groups.
TAX_CODE_SEPARATORS = re.compile(r"[\s./-]")
# Shorter national codes exist only for companies in a few registries; four is a safe floor.
TAX_CODE_MIN_LENGTH = 4
ASCII_ALNUM = re.compile(r"^[A-Za-z0-9]*$")


def _is_invisible(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf"


def _check_name(value: str) -> str:
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise ValueError("must not contain control characters")
    if all(_is_invisible(char) for char in value):
        raise ValueError("must not be blank")
    return value


class UserCreate(BaseModel):
    """The body of ``POST /users``: unknown fields and non-string values are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: StrictStr
    first_name: StrictStr = Field(max_length=NAME_MAX_LENGTH)
    last_name: StrictStr = Field(max_length=NAME_MAX_LENGTH)
    tax_code: StrictStr | None = None
    iban: StrictStr | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("tax_code")
    @classmethod
    def _tax_code(cls, value: str | None) -> str | None:
        """Normalize to upper-case letters and digits; no single country's checksum is imposed."""
        if value is None or value == "":
            return None
        normalized = TAX_CODE_SEPARATORS.sub("", value)
        if not ASCII_ALNUM.fullmatch(normalized):
            raise ValueError("must contain only letters A-Z and digits (spaces, . - / allowed)")
        if not TAX_CODE_MIN_LENGTH <= len(normalized) <= TAX_CODE_MAX_LENGTH:
            raise ValueError(
                f"must have {TAX_CODE_MIN_LENGTH} to {TAX_CODE_MAX_LENGTH} letters and digits"
            )
        return normalized.upper()

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        """Normalize to the compact upper-case form, checked against the IBAN registry."""
        if value is None or value == "":
            return None
        compact = re.sub(r"\s", "", value)
        if not ASCII_ALNUM.fullmatch(compact) or not 5 <= len(compact) <= IBAN_MAX_LENGTH:
            raise ValueError(f"must be 5 to {IBAN_MAX_LENGTH} letters and digits (spaces allowed)")
        # Imported on first use: the gRPC server and the worker never validate an IBAN,
        # and schwifty with its registry costs ~6 MB per process.
        from schwifty import IBAN
        from schwifty.exceptions import SchwiftyException

        try:
            # Country code, length and BBAN format for that country, ISO 13616 mod-97.
            return IBAN(compact).compact
        except SchwiftyException as error:
            raise ValueError(f"is not a valid IBAN: {error}") from None


# The user's INSERT, done in the statement that claims the Idempotency-Key (built once).
# Not while the interests of a previous account with this email still wait in the outbox
# to be deleted (see create_user).
CREATE_USER_STATEMENT = idempotency.insert_statement(
    "INSERT INTO users (email, first_name, last_name, tax_code, iban, created_at) "
    "SELECT :email, :first_name, :last_name, :tax_code, :iban, :created_at FROM claim "
    "WHERE NOT EXISTS (SELECT FROM outbox "
    "WHERE method = :pending_method AND payload->>'email' = :email) "
    "ON CONFLICT DO NOTHING RETURNING 1"
)


def create_user(*, data: UserCreate, key: str) -> Outcome:
    """Insert the user at most once per key, or answer 409 when the email or tax code is taken.

    An email whose previous account's interests are still waiting in the
    outbox to be deleted (the Data Collector was down) is refused for now:
    created again, the new account's interests would be wiped by that late
    delivery. The refusal is raised, not returned, so it is not stored
    against the key and the same request succeeds once the outbox is drained.
    """
    row = {
        "email": data.email,
        "first_name": data.first_name,
        "last_name": data.last_name,
        "tax_code": data.tax_code,
        "iban": data.iban,
        "created_at": utc_now(),
    }
    return idempotency.insert_once(
        statement=CREATE_USER_STATEMENT,
        params={**row, "pending_method": outbox.DELETE_USER_INTERESTS},
        key=key,
        method="POST",
        path="/users",
        body=data.model_dump(),
        user_email=data.email,
        done=Outcome(201, {"message": "User created successfully", "user": user_to_dict(row)}),
        otherwise=lambda: _create_conflict(email=data.email),
    )


def _create_conflict(*, email: str) -> Outcome:
    if db.session.get(User, email) is not None:
        return Outcome(409, {"error": "User already exists"})
    if db.session.scalar(select(outbox.pending_delete_for(email=email))):
        raise ApiError(
            409,
            "A previous account with this email is still being deleted; try again shortly.",
            headers={"Retry-After": "10"},
        )
    return Outcome(409, {"error": "tax_code is already registered to another user"})


def delete_user(*, email: str) -> Outcome:
    """Delete the user and queue the deletion of their interests; 404 when there is none."""
    deleted = db.session.execute(
        delete(User).where(User.email == email).returning(User.email)
    ).first()
    if deleted is None:
        return Outcome(404, {"error": "User not found"})
    message_id = outbox.enqueue_delete_user_interests(email=email)
    return Outcome(200, {"message": "User deleted successfully"}, outbox_ids=(message_id,))


# Reads are prebuilt Core statements on the table: no ORM identity map, no per-request
# statement construction.
USERS = User.__table__
GET_USER = select(USERS).where(USERS.c.email == bindparam("email"))


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
        page.c.tax_code,
        page.c.iban,
        isoformat_utc_sql(page.c.created_at).label("created_at"),
    ]
    return json_item_rows(page, fields, keys=[page.c.email], order_by=[page.c.email])


FIRST_USERS = _users_page(after=False)
USERS_AFTER = _users_page(after=True)
USER_EXISTS = select(USERS.c.email).where(USERS.c.email == bindparam("email"))


def get_user(*, email: str) -> dict | None:
    """Return the user with this (normalized) email as public JSON, if any."""
    autocommit_statements(db)
    row = db.session.execute(GET_USER, {"email": email}).first()
    return None if row is None else user_to_dict(row)


def list_users(*, after_email: str | None, limit: int) -> list:
    """Return up to ``limit`` users ordered by email, strictly after ``after_email``.

    Each row holds ``item``, the user's public JSON (built by PostgreSQL, as
    :func:`user_to_dict` shapes it), and ``email``, the sort key.
    """
    autocommit_statements(db)
    connection = db.session.connection()
    if after_email is None:
        return connection.execute(FIRST_USERS, {"limit": limit}).all()
    return connection.execute(USERS_AFTER, {"limit": limit, "after": after_email}).all()


def user_exists(*, email: str) -> bool:
    """Answer the gRPC CheckUserExists question for any string."""
    try:
        normalized = normalize_email(email)
    except ValueError:
        return False
    autocommit_statements(db)
    return db.session.execute(USER_EXISTS, {"email": normalized}).first() is not None

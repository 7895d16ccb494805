"""User Manager business logic: the rules a user must satisfy, and user storage.

Writes run inside :func:`user_manager.idempotency.execute_once`, which owns
the transaction: the functions here never commit, so the user row, the
idempotency key and any outbox message commit together or not at all.
"""

import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy import delete, literal, select
from sqlalchemy.dialects.postgresql import insert

from common.errors import ApiError
from common.timeutil import utc_now
from common.validation import normalize_email
from user_manager import outbox
from user_manager.idempotency import Outcome
from user_manager.models import (
    IBAN_MAX_LENGTH,
    NAME_MAX_LENGTH,
    TAX_CODE_MAX_LENGTH,
    User,
    db,
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
        try:
            # Country code, length and BBAN format for that country, ISO 13616 mod-97.
            return IBAN(compact).compact
        except SchwiftyException as error:
            raise ValueError(f"is not a valid IBAN: {error}") from None


def create_user(*, data: UserCreate) -> Outcome:
    """Insert the user, or answer 409 when the email or tax code is taken.

    An email whose previous account's interests are still waiting in the
    outbox to be deleted (the Data Collector was down) is refused for now:
    created again, the new account's interests would be wiped by that late
    delivery. The refusal is raised, not returned, so it is not stored
    against the key and the same request succeeds once the outbox is drained.
    """
    user = User(**data.model_dump(), created_at=utc_now())
    columns = ["email", "first_name", "last_name", "tax_code", "iban", "created_at"]
    row = select(*(literal(getattr(user, column)) for column in columns)).where(
        ~outbox.pending_delete_for(email=user.email)
    )
    inserted = db.session.execute(
        insert(User).from_select(columns, row).on_conflict_do_nothing().returning(User.email)
    ).first()
    if inserted is None:
        if db.session.get(User, data.email) is not None:
            return Outcome(409, {"error": "User already exists"})
        if db.session.scalar(select(outbox.pending_delete_for(email=user.email))):
            raise ApiError(
                409,
                "A previous account with this email is still being deleted; try again shortly.",
                headers={"Retry-After": "10"},
            )
        return Outcome(409, {"error": "tax_code is already registered to another user"})
    return Outcome(201, {"message": "User created successfully", "user": user.to_dict()})


def delete_user(*, email: str) -> Outcome:
    """Delete the user and queue the deletion of their interests; 404 when there is none."""
    deleted = db.session.execute(
        delete(User).where(User.email == email).returning(User.email)
    ).first()
    if deleted is None:
        return Outcome(404, {"error": "User not found"})
    message_id = outbox.enqueue_delete_user_interests(email=email)
    return Outcome(200, {"message": "User deleted successfully"}, outbox_ids=(message_id,))


def get_user(*, email: str) -> User | None:
    """Return the user with this (normalized) email, if any."""
    return db.session.get(User, email)


def list_users(*, after_email: str | None, limit: int) -> list[User]:
    """Return up to ``limit`` users ordered by email, strictly after ``after_email``."""
    query = select(User).order_by(User.email).limit(limit)
    if after_email is not None:
        query = query.where(User.email > after_email)
    return list(db.session.scalars(query))


def user_exists(*, email: str) -> bool:
    """Answer the gRPC CheckUserExists question for any string."""
    try:
        normalized = normalize_email(email)
    except ValueError:
        return False
    return db.session.scalar(select(User.email).where(User.email == normalized)) is not None

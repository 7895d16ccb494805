"""User Manager business logic: validation rules, at-most-once execution, user storage.

At-most-once design (issue "at-most-once", option a): the idempotency key
is claimed, the work is done and the key is completed in ONE database
transaction. PostgreSQL makes a concurrent INSERT of the same key wait until
the first transaction ends; the waiter then sees the completed key and
replays its answer. Consequences that matter to clients:

- a crash at any point rolls back the claim together with the work, so a key
  is never left ``in-progress`` and a retry simply does the work;
- concurrent duplicates never see ``in-progress``: they wait (milliseconds)
  and get the original answer, marked ``Idempotent-Replayed: true``;
- validation errors are raised before the claim is committed, so they are
  never stored and a corrected retry with the same key works.
"""

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from common.errors import ApiError
from common.grpc_client import GrpcPeer, PeerUnavailableError
from common.rpc import flight_tracker_pb2
from common.timeutil import utc_now
from common.validation import normalize_email
from user_manager.models import IdempotencyKey, User, db

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
TAX_CODE_PATTERN = re.compile(r"^[A-Z0-9]{4,32}$")
IBAN_PATTERN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")


def iban_checksum_ok(iban: str) -> bool:
    """Check the ISO 13616 mod-97 checksum of a normalized IBAN."""
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97 == 1


class UserCreate(BaseModel):
    """The body of ``POST /users``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: StrictStr
    first_name: StrictStr = Field(min_length=1, max_length=100)
    last_name: StrictStr = Field(min_length=1, max_length=100)
    tax_code: StrictStr | None = None
    iban: StrictStr | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value)

    @field_validator("tax_code")
    @classmethod
    def _tax_code(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        normalized = re.sub(r"[\s-]", "", value).upper()
        if not TAX_CODE_PATTERN.fullmatch(normalized):
            raise ValueError("must be 4 to 32 letters and digits")
        return normalized

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        normalized = re.sub(r"\s", "", value).upper()
        if not IBAN_PATTERN.fullmatch(normalized) or not iban_checksum_ok(normalized):
            raise ValueError("is not a valid IBAN (ISO 13616 check digits do not match)")
        return normalized


@dataclass(frozen=True)
class Outcome:
    """The answer to a state-changing request, fresh or replayed."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def require_idempotency_key(value: str | None) -> str:
    """Return the header's value, or raise the seed's 400 when it is missing or malformed."""
    if value is None or not value.strip():
        raise ApiError(400, "The Idempotency-Key header is required for this request.")
    if not IDEMPOTENCY_KEY_PATTERN.fullmatch(value):
        raise ApiError(400, "The Idempotency-Key header must be 1 to 255 visible ASCII characters.")
    return value


def request_fingerprint(method: str, path: str, body: dict[str, Any] | None) -> str:
    """Hash what makes two requests "the same": method, resource and normalized body."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def execute_once(
    *,
    key: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    user_email: str,
    operation: Callable[[], Outcome],
) -> Outcome:
    """Run ``operation`` at most once per key; replay the stored outcome for repeats."""
    fingerprint = request_fingerprint(method, path, body)
    session = db.session
    claimed = session.execute(
        insert(IdempotencyKey)
        .values(
            key=key,
            status="in-progress",
            created_at=utc_now(),
            user_email=user_email,
            request_method=method,
            request_path=path,
            request_fingerprint=fingerprint,
        )
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.key])
        .returning(IdempotencyKey.key)
    ).first()
    if claimed is None:
        session.rollback()
        return _replay(key=key, fingerprint=fingerprint)

    outcome = operation()
    session.execute(
        IdempotencyKey.__table__.update()
        .where(IdempotencyKey.key == key)
        .values(
            status="completed",
            response_code=outcome.status,
            response_body=json.dumps(outcome.body),
        )
    )
    session.commit()
    return outcome


def _replay(*, key: str, fingerprint: str) -> Outcome:
    stored = db.session.get(IdempotencyKey, key)
    if stored is None:
        # Expired and reaped between our INSERT and this read: the client reused an old key.
        raise ApiError(409, "This Idempotency-Key was just expired; retry with a new key.")
    if stored.request_fingerprint != fingerprint:
        raise ApiError(
            422,
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
        )
    if stored.status != "completed" or stored.response_code is None:
        raise ApiError(
            409, "A request with this Idempotency-Key is in progress.", headers={"Retry-After": "1"}
        )
    return Outcome(stored.response_code, json.loads(stored.response_body or "{}"), replayed=True)


def create_user(*, data: UserCreate) -> Outcome:
    """Insert the user, or answer 409 when the email or tax code is taken."""
    user = User(
        email=data.email,
        first_name=data.first_name,
        last_name=data.last_name,
        tax_code=data.tax_code,
        iban=data.iban,
        created_at=utc_now(),
    )
    inserted = db.session.execute(
        insert(User)
        .values(
            email=user.email,
            first_name=user.first_name,
            last_name=user.last_name,
            tax_code=user.tax_code,
            iban=user.iban,
            created_at=user.created_at,
        )
        .on_conflict_do_nothing()
        .returning(User.email)
    ).first()
    if inserted is None:
        if db.session.get(User, data.email) is not None:
            return Outcome(409, {"error": "User already exists"})
        return Outcome(409, {"error": "tax_code is already registered to another user"})
    return Outcome(201, {"message": "User created successfully", "user": user.to_dict()})


def delete_user(*, email: str) -> Outcome:
    """Delete the user; answer 404 when there is none."""
    deleted = db.session.execute(
        delete(User).where(User.email == email).returning(User.email)
    ).first()
    if deleted is None:
        return Outcome(404, {"error": "User not found"})
    return Outcome(200, {"message": "User deleted successfully"})


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


def delete_user_interests(*, peer: GrpcPeer, email: str) -> int | None:
    """Ask the Data Collector to drop the user's interests; return the count, None if it failed."""
    try:
        reply = peer.call("DeleteUserInterests", flight_tracker_pb2.UserRequest(email=email))
    except PeerUnavailableError as error:
        log.warning("could not delete interests of a deleted user: %s", error)
        return None
    return reply.deleted_count

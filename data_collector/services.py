"""Data Collector business logic: interests, and the user check against the User Manager."""

import logging
import re

from pydantic import BaseModel, ConfigDict, StrictStr, field_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from common.errors import ApiError
from common.grpc_client import GrpcPeer, PeerUnavailableError
from common.rpc import flight_tracker_pb2
from common.timeutil import utc_now
from common.validation import normalize_email
from data_collector.models import UserInterest, db

log = logging.getLogger(__name__)

ICAO_PATTERN = re.compile(r"^[A-Z]{4}$")


def normalize_airport_code(value: str) -> str:
    """Return the upper-case ICAO code, or raise ``ValueError`` saying what is wrong."""
    code = value.strip().upper()
    if not ICAO_PATTERN.fullmatch(code):
        raise ValueError("must be a 4-letter ICAO airport code, e.g. LIRF")
    return code


class InterestRequest(BaseModel):
    """The body of ``POST /interests`` and ``DELETE /interests``."""

    model_config = ConfigDict(extra="forbid")

    email: StrictStr
    airport_code: StrictStr

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value.strip())

    @field_validator("airport_code")
    @classmethod
    def _airport_code(cls, value: str) -> str:
        return normalize_airport_code(value)


def require_existing_user(*, peer: GrpcPeer, email: str) -> None:
    """Ask the User Manager whether the user exists: 404 if not, 503 if it cannot answer."""
    try:
        reply = peer.call("CheckUserExists", flight_tracker_pb2.UserRequest(email=email))
    except PeerUnavailableError as error:
        log.warning("User Manager unavailable for CheckUserExists: %s", error)
        raise ApiError(
            503,
            "The User Manager is unavailable, so the user cannot be checked; try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    if not reply.exists:
        raise ApiError(404, "User not found")


def add_interest(*, email: str, airport_code: str) -> bool:
    """Store the interest once; return whether it is new."""
    inserted = db.session.execute(
        insert(UserInterest)
        .values(user_email=email, airport_code=airport_code, created_at=utc_now())
        .on_conflict_do_nothing(constraint="uq_user_interests_user_airport")
        .returning(UserInterest.id)
    ).first()
    db.session.commit()
    return inserted is not None


def remove_interest(*, email: str, airport_code: str) -> bool:
    """Delete one interest; return whether it existed."""
    deleted = db.session.execute(
        delete(UserInterest)
        .where(UserInterest.user_email == email, UserInterest.airport_code == airport_code)
        .returning(UserInterest.id)
    ).first()
    db.session.commit()
    return deleted is not None


def list_interests(*, email: str) -> list[UserInterest]:
    """Return the user's interests ordered by airport code."""
    query = (
        select(UserInterest)
        .where(UserInterest.user_email == email)
        .order_by(UserInterest.airport_code)
    )
    return list(db.session.scalars(query))


def delete_user_interests(*, email: str) -> int:
    """Delete every interest of the user (idempotent); return how many went."""
    try:
        normalized = normalize_email(email)
    except ValueError:
        return 0
    result = db.session.execute(delete(UserInterest).where(UserInterest.user_email == normalized))
    db.session.commit()
    return result.rowcount

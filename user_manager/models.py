"""User Manager tables: users, the idempotency keys that make writes at-most-once, the outbox."""

from datetime import datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from common.emails import EMAIL_MAX_LENGTH
from common.timeutil import isoformat_utc

db = SQLAlchemy()

# Long enough for every real given or family name; short enough to stop abuse.
NAME_MAX_LENGTH = 100
# National tax identifiers run from a few characters to 18 (China); 32 leaves room.
TAX_CODE_MAX_LENGTH = 32
# ISO 13616 caps an IBAN at 34 characters.
IBAN_MAX_LENGTH = 34


class User(db.Model):
    """A registered user, identified by the lower-cased email address."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    last_name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    tax_code: Mapped[str | None] = mapped_column(String(TAX_CODE_MAX_LENGTH), unique=True)
    iban: Mapped[str | None] = mapped_column(String(IBAN_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def user_to_dict(user) -> dict:
    """Return a user (a result row, or a mapping of its columns) as public JSON."""
    row = user if isinstance(user, dict) else user._mapping
    return {
        "email": row["email"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "tax_code": row["tax_code"],
        "iban": row["iban"],
        "created_at": isoformat_utc(row["created_at"]),
    }


class IdempotencyKey(db.Model):
    """The stored outcome of one state-changing request, keyed by its ``Idempotency-Key``.

    ``request_fingerprint`` binds the key to the request that first used it,
    so the same key sent with another method, path or body is refused rather
    than answered with someone else's result.
    """

    __tablename__ = "idempotency_keys"

    # Hash of the caller's identity ('' with authentication off): keys are per caller.
    caller: Mapped[str] = mapped_column(String(64), primary_key=True, server_default="")
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    response_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    # The user the key's request is about: cleared (with all the key holds of them) as soon
    # as no user has this email, since it only serves to find the keys to clear then.
    user_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH), index=True)
    request_method: Mapped[str] = mapped_column(String(10))
    request_path: Mapped[str] = mapped_column(String(2048))
    request_fingerprint: Mapped[str] = mapped_column(String(64))


class OutboxMessage(db.Model):
    """A gRPC call to a peer, written in the transaction whose change requires it.

    The row exists until the peer acknowledges the call; the request that
    wrote it tries first, the relay (``user_manager.worker``) retries with
    backoff. ``next_attempt_at`` orders and schedules those attempts.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # "A deletion of this email's interests is still pending", read by every create.
        Index(
            "ix_outbox_pending_email",
            text("(payload ->> 'email')"),
            postgresql_where=text("method = 'DeleteUserInterests'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    last_error: Mapped[str | None] = mapped_column(Text)

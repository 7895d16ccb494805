"""User Manager tables: users and the idempotency keys that make writes at-most-once."""

from datetime import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from common.timeutil import isoformat_utc

db = SQLAlchemy()

# RFC 5321 caps a forward path at 256 octets including the angle brackets.
EMAIL_MAX_LENGTH = 254


class User(db.Model):
    """A registered user, identified by the lower-cased email address."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    tax_code: Mapped[str | None] = mapped_column(String(32), unique=True)
    iban: Mapped[str | None] = mapped_column(String(34))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def to_dict(self) -> dict:
        """Return the public JSON representation."""
        return {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "tax_code": self.tax_code,
            "iban": self.iban,
            "created_at": isoformat_utc(self.created_at),
        }


class IdempotencyKey(db.Model):
    """The stored outcome of one state-changing request, keyed by its ``Idempotency-Key``.

    ``request_fingerprint`` binds the key to the request that first used it,
    so the same key sent with another method, path or body is refused rather
    than answered with someone else's result.
    """

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    response_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    user_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    request_method: Mapped[str] = mapped_column(String(10))
    request_path: Mapped[str] = mapped_column(String(2048))
    request_fingerprint: Mapped[str] = mapped_column(String(64))

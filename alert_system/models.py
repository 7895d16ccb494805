"""Alert System tables: each interest's alert state, the interests removed, the broker outbox."""

from datetime import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from common.broker.messages import AIRPORT_LENGTH
from common.broker.outbox import outbox_table
from common.emails import EMAIL_MAX_LENGTH

db = SQLAlchemy()

# "inside", "above" or "below".
CONDITION_LENGTH = 8


class AlertState(db.Model):
    """Where an interest's airport stands against the interest's thresholds, and since when.

    ``version`` grows by one each time the condition changes; a crossing is
    named after the interest and the version that started it. ``window_end``
    and ``event_at`` (when the collector committed the event last applied)
    order the events: an older one than those already applied is skipped.
    """

    __tablename__ = "alert_states"

    interest_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    airport: Mapped[str] = mapped_column(String(AIRPORT_LENGTH))
    condition: Mapped[str] = mapped_column(String(CONDITION_LENGTH))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)
    value: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RemovedInterest(db.Model):
    """An interest deleted at the collector: events naming it are skipped until it is reaped."""

    __tablename__ = "removed_interests"

    interest_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    removed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


OUTBOX = outbox_table(db.metadata)

"""SLA detector tables: its configuration, the samples it keeps, the breaches, its outbox.

Everything a check needs lives here rather than in a process, so a restart
(or another replica) carries on where the last check left off: the
configuration set through the API, the last samples of each metric, the
breaches still open.
"""

from datetime import datetime
from typing import Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from common.broker.outbox import outbox_table
from common.timeutil import isoformat_utc
from sla_detector.inputs import NAME_MAX_LENGTH, QUERY_MAX_LENGTH

db = SQLAlchemy()
OUTBOX = outbox_table(db.metadata)

SOURCES = ("file", "api")
# A metric's last outcome when its check took a sample (else it says why not).
OUTCOME_OK = "ok"
SIDES = ("min", "max")
# A breach id is a SHA-256 in hex.
BREACH_ID_LENGTH = 64


class DetectorState(db.Model):
    """The single row: the configuration in force, since when the detector runs, the last check.

    ``source`` says where the configuration came from: ``file`` (SLA_CONFIG_FILE,
    replaced when the file changes), ``api`` (PUT /sla/config, kept across
    restarts whatever the file says). ``file_digest`` is the SHA-256 of the file
    it was read from, so a changed file is noticed at the next start.
    """

    __tablename__ = "detector_state"
    __table_args__ = (
        CheckConstraint("id = 1", name="ck_detector_state_single_row"),
        CheckConstraint(f"source IN {SOURCES}", name="ck_detector_state_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    document: Mapped[dict | None] = mapped_column(JSONB)
    source: Mapped[str | None] = mapped_column(String(8))
    file_digest: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MetricState(db.Model):
    """What the detector knows of one configured metric: its last check, its open breaches."""

    __tablename__ = "metric_state"

    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), primary_key=True)
    # The samples below were taken with this query; a new query starts from none.
    query: Mapped[str] = mapped_column(String(QUERY_MAX_LENGTH))
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # ok, no data (the query returned nothing), or why Prometheus gave no sample.
    last_outcome: Mapped[str | None] = mapped_column(Text)
    open_min_breach: Mapped[str | None] = mapped_column(String(BREACH_ID_LENGTH))
    open_max_breach: Mapped[str | None] = mapped_column(String(BREACH_ID_LENGTH))


class Sample(db.Model):
    """One check's value of a metric: the lowest and the highest of the series it returned."""

    __tablename__ = "samples"
    __table_args__ = (Index("ix_samples_metric_taken_at", "metric", "taken_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    metric: Mapped[str] = mapped_column(
        String(NAME_MAX_LENGTH), ForeignKey("metric_state.name", ondelete="CASCADE")
    )
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)


class Breach(db.Model):
    """A breach: raised when enough samples strayed, ended once they all came back."""

    __tablename__ = "breaches"
    __table_args__ = (
        CheckConstraint(f"violated IN {SIDES}", name="ck_breaches_violated"),
        Index("ix_breaches_metric_at", "metric", "at"),
    )

    breach_id: Mapped[str] = mapped_column(String(BREACH_ID_LENGTH), primary_key=True)
    metric: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    query: Mapped[str] = mapped_column(String(QUERY_MAX_LENGTH))
    violated: Mapped[str] = mapped_column(String(3))
    limit: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    below: Mapped[int] = mapped_column(Integer)
    above: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict[str, Any]:
        """Return the public JSON representation (the event's fields, and when it ended)."""
        return {
            "breach_id": self.breach_id,
            "metric": self.metric,
            "query": self.query,
            "value": self.value,
            "violated": self.violated,
            "limit": self.limit,
            "below": self.below,
            "above": self.above,
            "at": isoformat_utc(self.at),
            "ended_at": isoformat_utc(self.ended_at),
        }

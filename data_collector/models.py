"""Data Collector tables: user interests and collected flights (seed section 5.2)."""

from datetime import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import BigInteger, DateTime, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from common.timeutil import isoformat_utc
from common.validation import EMAIL_MAX_LENGTH

db = SQLAlchemy()


class UserInterest(db.Model):
    """A user follows an airport; each pair is stored once."""

    __tablename__ = "user_interests"
    __table_args__ = (
        UniqueConstraint("user_email", "airport_code", name="uq_user_interests_user_airport"),
        Index("ix_user_interests_airport_code", "airport_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    airport_code: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def to_dict(self) -> dict:
        """Return the public JSON representation."""
        return {
            "email": self.user_email,
            "airport_code": self.airport_code,
            "created_at": isoformat_utc(self.created_at),
        }


class FlightData(db.Model):
    """One flight as OpenSky reports it, identified by (icao24, first_seen)."""

    __tablename__ = "flight_data"
    __table_args__ = (
        UniqueConstraint("icao24", "first_seen", name="uq_flight_data_icao24_first_seen"),
        # "Departures of X, newest first" and "arrivals at X, newest first".
        Index("ix_flight_data_departure", "est_departure_airport", "first_seen"),
        Index("ix_flight_data_arrival", "est_arrival_airport", "last_seen"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    icao24: Mapped[str] = mapped_column(String(6))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    est_departure_airport: Mapped[str | None] = mapped_column(String(8))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    est_arrival_airport: Mapped[str | None] = mapped_column(String(8))
    callsign: Mapped[str | None] = mapped_column(String(8))
    est_departure_airport_horiz_distance: Mapped[int | None] = mapped_column(Integer)
    est_departure_airport_vert_distance: Mapped[int | None] = mapped_column(Integer)
    est_arrival_airport_horiz_distance: Mapped[int | None] = mapped_column(Integer)
    est_arrival_airport_vert_distance: Mapped[int | None] = mapped_column(Integer)
    departure_airport_candidates_count: Mapped[int | None] = mapped_column(Integer)
    arrival_airport_candidates_count: Mapped[int | None] = mapped_column(Integer)

    def to_dict(self) -> dict:
        """Return the public JSON representation (UTC ISO 8601 times)."""
        return {
            "icao24": self.icao24,
            "first_seen": isoformat_utc(self.first_seen),
            "est_departure_airport": self.est_departure_airport,
            "last_seen": isoformat_utc(self.last_seen),
            "est_arrival_airport": self.est_arrival_airport,
            "callsign": self.callsign,
            "est_departure_airport_horiz_distance": self.est_departure_airport_horiz_distance,
            "est_departure_airport_vert_distance": self.est_departure_airport_vert_distance,
            "est_arrival_airport_horiz_distance": self.est_arrival_airport_horiz_distance,
            "est_arrival_airport_vert_distance": self.est_arrival_airport_vert_distance,
            "departure_airport_candidates_count": self.departure_airport_candidates_count,
            "arrival_airport_candidates_count": self.arrival_airport_candidates_count,
        }

"""Data Collector tables: interests and flights (names fixed by the specification), bookkeeping.

And what the alerts pipeline needs here: each interest's thresholds and the
alert state the Alert System reports, each airport's figure as last sent to
it (``alert_windows``), and the broker outbox (``OUTBOX``).
"""

from datetime import date, datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from common.airports import airport_name
from common.broker.outbox import outbox_table
from common.emails import EMAIL_MAX_LENGTH
from common.timeutil import DAY, day_number, day_start, isoformat_utc, moment, utc_now

db = SQLAlchemy()


# The largest threshold: the columns are PostgreSQL integers.
THRESHOLD_MAX = 2**31 - 1
# "inside", "above" or "below".
CONDITION_LENGTH = 8


class UserInterest(db.Model):
    """A user follows an airport, with thresholds; each pair is stored once.

    ``high_value`` and ``low_value`` are the user's thresholds (None: that
    side never fires). ``alert_*`` and ``last_email_at`` are what the Alert
    System and the Notifier reported (``to-data-collector``): the condition,
    since when, the version of that state (a report of an older one is
    ignored), and when the last email was accepted by the mail server.
    """

    __tablename__ = "user_interests"
    __table_args__ = (
        UniqueConstraint("user_email", "airport_code", name="uq_user_interests_user_airport"),
        Index("ix_user_interests_airport_code", "airport_code"),
        CheckConstraint("high_value >= 0", name="ck_user_interests_high_value"),
        CheckConstraint("low_value >= 0", name="ck_user_interests_low_value"),
        CheckConstraint("high_value > low_value", name="ck_user_interests_thresholds_order"),
        CheckConstraint(
            "alert_condition IN ('inside', 'above', 'below')",
            name="ck_user_interests_alert_condition",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    airport_code: Mapped[str] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    high_value: Mapped[int | None] = mapped_column(Integer)
    low_value: Mapped[int | None] = mapped_column(Integer)
    alert_condition: Mapped[str | None] = mapped_column(String(CONDITION_LENGTH))
    alert_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    alert_version: Mapped[int | None] = mapped_column(Integer)
    last_email_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def to_dict(
        self,
        *,
        waits_for_credits_until: str | None = None,
        window: "AlertWindow | None" = None,
    ) -> dict:
        """Return the public JSON representation.

        ``waits_for_credits_until``: when the daily credits that collection of
        the airport waits for come (None: it does not wait). ``window``: the
        airport's figure over its alert window (None: no window yet).
        """
        return {
            "email": self.user_email,
            "airport_code": self.airport_code,
            "airport_name": airport_name(self.airport_code),
            "created_at": isoformat_utc(self.created_at),
            "collection_waits_for_credits_until": waits_for_credits_until,
            "high_value": self.high_value,
            "low_value": self.low_value,
            "alert_window": None if window is None else window.to_dict(),
            "alert_state": {
                "condition": self.alert_condition,
                "since": isoformat_utc(self.alert_since),
                "last_email_at": isoformat_utc(self.last_email_at),
            },
        }


class FlightData(db.Model):
    """One flight as OpenSky reports it, identified by (icao24, first_seen)."""

    __tablename__ = "flight_data"
    __table_args__ = (
        UniqueConstraint("icao24", "first_seen", name="uq_flight_data_icao24_first_seen"),
        # "Departures of X, newest first" and "arrivals at X, newest first".
        Index("ix_flight_data_departure", "est_departure_airport", "first_seen"),
        Index("ix_flight_data_arrival", "est_arrival_airport", "last_seen"),
        # Retention: "older than the cutoff" without reading the whole table; and with
        # the next, "every arrival / departure, newest first" (GET /flights).
        Index("ix_flight_data_last_seen", "last_seen"),
        Index("ix_flight_data_first_seen", "first_seen"),
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


class CollectedDay(db.Model):
    """What was fetched of one UTC day for one airport and direction (see collection/planning.py).

    Written in the same transaction as the flights of the fetch, so a mark
    never claims a range whose flights are not stored.
    """

    __tablename__ = "collected_days"
    __table_args__ = (
        CheckConstraint(
            "direction IN ('arrival', 'departure')", name="ck_collected_days_direction"
        ),
    )

    airport_code: Mapped[str] = mapped_column(String(4), primary_key=True)
    direction: Mapped[str] = mapped_column(String(9), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # Every second from the day's start up to this one was fetched.
    fetched_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # When the oldest of those fetches happened (decides whether the day is settled).
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AlertWindow(db.Model):
    """An airport's figure over its alert window, as last sent to the Alert System.

    The window is the most recent whole UTC day whose arrivals and
    departures are both settled in ``collected_days``; the figure counts
    that day's arrivals (by ``last_seen``) and departures (by
    ``first_seen``). Written with the ``flights`` event that carries it, in
    the same transaction (data_collector.alerts): a cycle sends an event
    only when it differs from this row, and ``GET /interests/{email}`` shows it.
    """

    __tablename__ = "alert_windows"

    airport_code: Mapped[str] = mapped_column(String(4), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    arrivals: Mapped[int] = mapped_column(Integer)
    departures: Mapped[int] = mapped_column(Integer)
    # When the event carrying this figure was written (the database's clock).
    committed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def start(self) -> datetime:
        """The window's first instant (midnight UTC of ``day``)."""
        return moment(day_start(day_number(self.day)))

    @property
    def end(self) -> datetime:
        """The instant the window ends (excluded): the next midnight UTC."""
        return moment(day_start(day_number(self.day)) + DAY)

    def to_dict(self) -> dict:
        """Return the ``alert_window`` of ``GET /interests/{email}``."""
        return {
            "start": isoformat_utc(self.start),
            "end": isoformat_utc(self.end),
            "arrivals": self.arrivals,
            "departures": self.departures,
            "flights": self.arrivals + self.departures,
        }


# Where each stored range of flights passes on its way into flight_data: flight_data's
# columns without its constraints, indexes or triggers, unlogged, and empty again before
# every commit (data_collector.collection.store.upsert_flights).
flight_data_incoming = db.Table(
    "flight_data_incoming",
    *(
        Column(column.name, column.type, nullable=True)
        for column in FlightData.__table__.columns
        if column.name != "id"
    ),
    prefixes=["UNLOGGED"],
)


class FlightDayCount(db.Model):
    """How many stored flights arrived at / departed from an airport on one UTC day.

    Maintained by triggers on ``flight_data`` (migration 0004), never written
    by the code: averages read a row per day instead of every flight.
    """

    __tablename__ = "flight_day_counts"
    __table_args__ = (
        CheckConstraint(
            "direction IN ('arrival', 'departure')", name="ck_flight_day_counts_direction"
        ),
    )

    airport_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    direction: Mapped[str] = mapped_column(String(9), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    flights: Mapped[int] = mapped_column(Integer)


class CollectionRequest(db.Model):
    """A cycle asked for (a new interest, the ops endpoint); the worker runs one soon.

    A table rather than an in-memory signal, so a request made by any web
    worker of any replica reaches whichever worker process runs the cycle,
    and survives a restart of either. Requests coalesce: at most one row is
    pending (``taken`` false; a partial unique index enforces it), however
    often the unauthenticated ``POST /collection/runs`` is called. A cycle
    takes the rows present when it starts and deletes exactly those when it
    ends; a request made meanwhile is a new pending row for the next cycle.
    """

    __tablename__ = "collection_requests"
    __table_args__ = (
        Index(
            "uq_collection_requests_pending",
            "taken",
            unique=True,
            postgresql_where=text("NOT taken"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    taken: Mapped[bool] = mapped_column(Boolean, server_default=false())
    requested_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CollectionRetry(db.Model):
    """A range whose fetch failed, and when the worker asks OpenSky for it again (see retries).

    Keyed by what the planner asks: the endpoint, the airport ('' for a
    ``/flights/all`` window) and the range's first second.
    """

    __tablename__ = "collection_retries"
    __table_args__ = (
        CheckConstraint(
            "endpoint IN ('arrival', 'departure', 'all')", name="ck_collection_retries_endpoint"
        ),
        Index("ix_collection_retries_next_attempt_at", "next_attempt_at"),
    )

    endpoint: Mapped[str] = mapped_column(String(9), primary_key=True)
    airport_code: Mapped[str] = mapped_column(String(4), primary_key=True)
    range_begin: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    range_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Failed fetches of this range in a row; the wait before the next one doubles with each.
    attempts: Mapped[int] = mapped_column(Integer)
    first_failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(String(500))


class CollectorState(db.Model):
    """The single row every replica reads: when OpenSky may be asked again, credits, last cycle."""

    __tablename__ = "collector_state"
    __table_args__ = (
        CheckConstraint("id = 1", name="ck_collector_state_single_row"),
        CheckConstraint(
            "breaker_state IN ('closed', 'open', 'half-open')",
            name="ck_collector_state_breaker_state",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # After a 429: no OpenSky request before this instant, from any process.
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    credits_remaining: Mapped[int | None] = mapped_column(Integer)
    credits_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_cycle_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the last periodic cycle started: a replica skips its own within the period.
    last_periodic_cycle_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_cycle_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_cycle_outcome: Mapped[str | None] = mapped_column(String(32))
    last_cycle_mode: Mapped[str | None] = mapped_column(String(16))
    last_cycle_requests: Mapped[int | None] = mapped_column(Integer)
    last_cycle_credits: Mapped[int | None] = mapped_column(Integer)
    last_cycle_flights: Mapped[int | None] = mapped_column(Integer)
    # Retention runs once per UTC day (it cuts on day boundaries): the day it last ran.
    retention_ran_on: Mapped[date | None] = mapped_column(Date)
    # Set when /flights/all was seen to return only flights contained in its window:
    # from then on every process collects per airport (NULL again to retry the sweep).
    sweep_unreliable_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The credits spent on the UTC day credits_day, against OPENSKY_DAILY_CREDITS; and
    # what the last cycle left for lack of credits: the day, the daily budget it had (a
    # higher one collects at once), the airports whose collection waits for the next day.
    credits_day: Mapped[date | None] = mapped_column(Date)
    credits_spent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    over_budget_on: Mapped[date | None] = mapped_column(Date)
    over_budget_credits: Mapped[int | None] = mapped_column(Integer)
    over_budget_airports: Mapped[list[str] | None] = mapped_column(ARRAY(String(4)))
    # The worker's daily budget as its last cycle had it: its default follows the OpenSky
    # account, whose credentials only the worker may hold, so the web role shows this one.
    daily_credits: Mapped[int | None] = mapped_column(Integer)
    # The last interest reconciliation pass (data_collector.interests): when it ran, how it
    # ended (done, refused, stopped), the interests it removed, the users the User Manager
    # did not know among those it asked about.
    reconciled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reconcile_outcome: Mapped[str | None] = mapped_column(String(16))
    reconcile_removed: Mapped[int | None] = mapped_column(Integer)
    reconcile_unknown_users: Mapped[int | None] = mapped_column(Integer)
    reconcile_users: Mapped[int | None] = mapped_column(Integer)
    # The circuit breaker around OpenSky (collection/opensky.py), as the last cycle left it:
    # closed, open (no call before breaker_opened_at plus the cool-down) or half-open (the
    # next call is the trial), and the calls failed in a row.
    breaker_state: Mapped[str] = mapped_column(String(9), default="closed", server_default="closed")
    breaker_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    breaker_opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def credits_spent_today(self) -> int:
        """Return the credits spent on the current UTC day."""
        return self.credits_spent if self.credits_day == utc_now().date() else 0

    def to_dict(self) -> dict:
        """Return the ``opensky`` part of ``GET /health``."""
        return {
            "credits_remaining": self.credits_remaining,
            "credits_spent_today": self.credits_spent_today(),
            # Only today: once a new UTC day starts, collection spends again.
            "over_budget_today": self.over_budget_on == utc_now().date(),
            "credits_checked_at": isoformat_utc(self.credits_checked_at),
            # Only while it is in the future: after that OpenSky may be asked again.
            "retry_after": isoformat_utc(
                self.not_before if self.not_before and self.not_before > utc_now() else None
            ),
            # Set when OpenSky's /flights/all proved unusable for the sweep.
            "sweep_unreliable_since": isoformat_utc(self.sweep_unreliable_since),
            # The last pass; "refused": it found more users the User Manager does not know
            # than a pass may remove, and removed nothing.
            "interest_reconciliation": {
                "ran_at": isoformat_utc(self.reconciled_at),
                "outcome": self.reconcile_outcome,
                "removed": self.reconcile_removed,
                "unknown_users": self.reconcile_unknown_users,
                "users": self.reconcile_users,
            },
            "last_cycle": {
                "started_at": isoformat_utc(self.last_cycle_started_at),
                "finished_at": isoformat_utc(self.last_cycle_finished_at),
                "outcome": self.last_cycle_outcome,
                "mode": self.last_cycle_mode,
                "requests": self.last_cycle_requests,
                "credits_spent": self.last_cycle_credits,
                "flights_stored": self.last_cycle_flights,
            },
        }


# Messages for the broker, written in the transaction that causes them (common.broker.outbox).
OUTBOX = outbox_table(db.metadata)

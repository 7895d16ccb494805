"""What collection reads and writes: flights (upserted), day marks, the shared state, retention.

The cycle (:mod:`data_collector.collection.cycle`) works in Unix seconds and
UTC day numbers; the database stores timestamps and dates. The conversion
happens here, at the edge (with :mod:`common.timeutil`), and nowhere else.
Every function runs in the caller's transaction; the caller commits.
"""

import io
import logging
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from common.timeutil import (
    DAY,
    day_date,
    day_number,
    day_start,
    moment,
    unix_seconds,
    utc_now,
)
from data_collector.collection.opensky import BreakerSnapshot
from data_collector.collection.planning import Mark
from data_collector.models import (
    CollectedDay,
    CollectorState,
    FlightData,
    FlightDayCount,
    UserInterest,
    db,
)

log = logging.getLogger(__name__)

FLIGHT_KEY = ("icao24", "first_seen")
FLIGHT_COLUMNS = tuple(c.name for c in FlightData.__table__.columns if c.name != "id")
_CHANGING = [c for c in FLIGHT_COLUMNS if c not in FLIGHT_KEY]
# A range's flights are COPYed into flight_data_incoming (migration 0007), then moved
# into flight_data by one statement, which leaves flight_data_incoming empty again.
_COLUMN_LIST = ", ".join(FLIGHT_COLUMNS)
COPY_FLIGHTS_SQL = f"COPY flight_data_incoming ({_COLUMN_LIST}) FROM STDIN"
UPSERT_FLIGHTS_SQL = (
    f"WITH given AS (DELETE FROM flight_data_incoming RETURNING {_COLUMN_LIST}) "
    f"INSERT INTO flight_data ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM given "
    "ON CONFLICT ON CONSTRAINT uq_flight_data_icao24_first_seen DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _CHANGING)
    + f" WHERE ({', '.join(f'flight_data.{c}' for c in _CHANGING)})"
    + f" IS DISTINCT FROM ({', '.join(f'EXCLUDED.{c}' for c in _CHANGING)})"
)
# Rows per COPY and move: a whole range in one (an airport's two days, far fewer at most
# airports), while a statement's transition tables stay a few megabytes.
UPSERT_ROWS_PER_STATEMENT = 10_000

# {(airport, direction): {day number: Mark}}, as planning reads them.
Marks = dict[tuple[str, str], dict[int, Mark]]


@dataclass(frozen=True)
class State:
    """What a cycle reads of the state every process shares (``collector_state``)."""

    # No OpenSky request before this (after a 429); None: none pending.
    not_before: float | None
    last_periodic_cycle_started_at: float | None
    last_cycle_outcome: str | None
    sweep_unreliable: bool
    credits_spent_today: int
    # The last cycle left requests for lack of credits on this UTC day (None: it did
    # not), with this daily budget.
    over_budget_day: int | None
    over_budget_credits: int | None
    # The circuit breaker around OpenSky, as the last cycle left it.
    breaker: BreakerSnapshot


def _state_row() -> CollectorState:
    """Return the single row of collection state every process shares."""
    return db.session.get(CollectorState, 1)


def read_state() -> State:
    """Return the shared state, its times as Unix seconds."""
    row = _state_row()
    return State(
        not_before=_seconds(row.not_before),
        last_periodic_cycle_started_at=_seconds(row.last_periodic_cycle_started_at),
        last_cycle_outcome=row.last_cycle_outcome,
        sweep_unreliable=row.sweep_unreliable_since is not None,
        credits_spent_today=row.credits_spent_today(),
        over_budget_day=None if row.over_budget_on is None else day_number(row.over_budget_on),
        over_budget_credits=row.over_budget_credits,
        breaker=BreakerSnapshot(row.breaker_state, row.breaker_failures, row.breaker_opened_at),
    )


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else unix_seconds(value)


def record_start(*, now: float, periodic: bool) -> None:
    """Record that a cycle started at ``now`` and is running."""
    row = _state_row()
    row.last_cycle_started_at = moment(now)
    if periodic:
        row.last_periodic_cycle_started_at = row.last_cycle_started_at
    row.last_cycle_finished_at = None
    row.last_cycle_outcome = "running"


def record_outcome(
    *, now: float, outcome: str, mode: str | None, requests: int, credits: int, flights: int
) -> None:
    """Record how the cycle that ends at ``now`` went (``GET /health``'s ``last_cycle``)."""
    row = _state_row()
    row.last_cycle_finished_at = moment(now)
    row.last_cycle_outcome = outcome
    row.last_cycle_mode = mode
    row.last_cycle_requests = requests
    row.last_cycle_credits = credits
    row.last_cycle_flights = flights


def record_breaker(snapshot: BreakerSnapshot) -> None:
    """Save the circuit breaker's state, for the next cycle of any process and ``/health``."""
    row = _state_row()
    row.breaker_state = snapshot.state
    row.breaker_failures = snapshot.failures
    row.breaker_opened_at = snapshot.opened_at


def wait_for_opensky(*, until: float) -> None:
    """Hold back every OpenSky request, from any process, until ``until`` (after a 429)."""
    _state_row().not_before = moment(until)


def distrust_sweep(*, since: float) -> None:
    """Remember, for every process and later cycle, that the sweep cannot be used."""
    _state_row().sweep_unreliable_since = moment(since)


def record_credit_waits(*, airports: list[str], budget: int) -> None:
    """Record what the cycle left for lack of credits: ``airports`` (none: nothing).

    ``budget``: the daily credits the cycle had.
    """
    row = _state_row()
    row.daily_credits = budget
    row.over_budget_on = utc_now().date() if airports else None
    row.over_budget_credits = budget if airports else None
    row.over_budget_airports = airports or None


def apply_retention(*, retention_days: int) -> None:
    """Delete what is older than ``retention_days``, once per UTC day (it cuts on days)."""
    row = _state_row()
    today = utc_now().date()
    if row.retention_ran_on != today:
        delete_expired(retention_days=retention_days)
        row.retention_ran_on = today


def followed_airports() -> list[str]:
    """Return every airport at least one user follows, sorted."""
    return sorted(db.session.scalars(select(UserInterest.airport_code).distinct()))


def load_marks(airports: list[str], *, first_day: int) -> Marks:
    """Return the stored marks of ``airports`` from day ``first_day`` on."""
    rows = db.session.scalars(
        select(CollectedDay).where(
            CollectedDay.airport_code.in_(airports), CollectedDay.day >= day_date(first_day)
        )
    )
    marks: Marks = {}
    for row in rows:
        marks.setdefault((row.airport_code, row.direction), {})[day_number(row.day)] = Mark(
            fetched_until=int(unix_seconds(row.fetched_until)),
            fetched_at=int(unix_seconds(row.fetched_at)),
        )
    return marks


def store_marks(marks: dict[tuple[str, str, int], Mark]) -> None:
    """Write marks for (airport, direction, day number)."""
    if not marks:
        return
    rows = [
        {
            "airport_code": airport,
            "direction": direction,
            "day": day_date(day),
            "fetched_until": moment(mark.fetched_until),
            "fetched_at": moment(mark.fetched_at),
        }
        for (airport, direction, day), mark in marks.items()
    ]
    statement = insert(CollectedDay)
    statement = statement.on_conflict_do_update(
        index_elements=["airport_code", "direction", "day"],
        set_={
            "fetched_until": statement.excluded.fetched_until,
            "fetched_at": statement.excluded.fetched_at,
        },
    )
    db.session.execute(statement, rows)


def upsert_flights(rows: list[dict]) -> int:
    """Insert or update flights on (icao24, first_seen) in bulk; return how many were given.

    A range's flights (up to ``UPSERT_ROWS_PER_STATEMENT``) are COPYed into
    ``flight_data_incoming`` and moved into ``flight_data`` by one INSERT ...
    ON CONFLICT DO UPDATE: the day-count triggers run once per range, not
    once per page of rows, and COPY's text format costs far less to build
    and to read than multi-row VALUES. Duplicates keep the last one given
    (one statement may not update a row twice). A row whose content did not
    change is left alone, so re-fetching a range writes nothing; an arrival
    OpenSky filled in later updates the row. It runs on the session's
    connection, in its transaction.
    """
    if not rows:
        return 0
    unique = list({(r["icao24"], r["first_seen"]): r for r in rows}.values())
    cursor = db.session.connection().connection.dbapi_connection.cursor()
    try:
        for first in range(0, len(unique), UPSERT_ROWS_PER_STATEMENT):
            page = unique[first : first + UPSERT_ROWS_PER_STATEMENT]
            cursor.copy_expert(COPY_FLIGHTS_SQL, io.StringIO(_copy_text(page)))
            cursor.execute(UPSERT_FLIGHTS_SQL)
    finally:
        cursor.close()
    return len(unique)


_ROW_VALUES = itemgetter(*FLIGHT_COLUMNS)
# What COPY's text format would read as a separator or an escape.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_value(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()  # with its offset: exact whatever the session's time zone
    return str(value)


def _copy_text(rows: list[dict]) -> str:
    """Return ``rows`` in COPY's text format, their values in ``FLIGHT_COLUMNS``' order."""
    return "".join("\t".join(map(_copy_value, _ROW_VALUES(row))) + "\n" for row in rows)


def delete_expired(*, retention_days: int) -> None:
    """Delete the days before the last ``retention_days``: flights and marks alike.

    The cut is a UTC day boundary, the same for both, so a day that keeps its
    mark keeps every flight it counts: its departures and arrivals all have
    ``last_seen`` on or after the day's start, and only flights that ended
    before it go. (A cut at "now minus N days" deleted part of the oldest
    marked day, which the average then counted as a whole, quieter day.)
    """
    first_kept = int(unix_seconds(utc_now())) // DAY - retention_days
    cutoff = moment(day_start(first_kept))
    flights = db.session.execute(delete(FlightData).where(FlightData.last_seen < cutoff))
    db.session.execute(delete(CollectedDay).where(CollectedDay.day < day_date(first_kept)))
    # The triggers keep counts exact; days whose flights are all gone leave zeros behind.
    db.session.execute(delete(FlightDayCount).where(FlightDayCount.flights == 0))
    if flights.rowcount:
        log.info("deleted %d flights that ended before %s", flights.rowcount, day_date(first_kept))


def followers() -> dict[str, int]:
    """Return how many users follow each followed airport."""
    query = select(UserInterest.airport_code, func.count()).group_by(UserInterest.airport_code)
    return {airport: count for airport, count in db.session.execute(query)}


def spend_credits(cost: int) -> None:
    """Add ``cost`` to the credits spent today (the count starts again each UTC day)."""
    if not cost:
        return
    current = _state_row()
    today = utc_now().date()
    if current.credits_day != today:
        current.credits_day, current.credits_spent = today, 0
    current.credits_spent += cost


def record_credits(remaining: int | None) -> None:
    """Remember the credits OpenSky said are left (for ``/health``), if it said."""
    if remaining is not None:
        current = _state_row()
        current.credits_remaining = remaining
        current.credits_checked_at = utc_now()

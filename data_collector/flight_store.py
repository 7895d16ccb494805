"""What collection writes: flights (upserted), the day marks of what was fetched, retention.

The cycle (:mod:`data_collector.collection`) works in planning's units, Unix
seconds and UTC day numbers; the database stores timestamps and dates. The
conversion happens here, at the edge, and nowhere else. Every function runs
in the caller's transaction; the caller commits.
"""

import io
import logging
from datetime import datetime
from operator import itemgetter

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from common.timeutil import utc_now
from data_collector.models import (
    CollectedDay,
    CollectorState,
    FlightData,
    FlightDayCount,
    UserInterest,
    db,
)
from data_collector.planning import DAY, Mark, day_date, day_number, day_start, moment

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


def state() -> CollectorState:
    """Return the single row of collection state every process shares."""
    return db.session.get(CollectorState, 1)


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
            fetched_until=int(row.fetched_until.timestamp()),
            fetched_at=int(row.fetched_at.timestamp()),
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
    first_kept = int(utc_now().timestamp()) // DAY - retention_days
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
    current = state()
    today = utc_now().date()
    if current.credits_day != today:
        current.credits_day, current.credits_spent = today, 0
    current.credits_spent += cost


def record_credits(remaining: int | None) -> None:
    """Remember the credits OpenSky said are left (for ``/health``), if it said."""
    if remaining is not None:
        current = state()
        current.credits_remaining = remaining
        current.credits_checked_at = utc_now()

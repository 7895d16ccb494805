"""Flight queries: an airport's flights page by page, its last flight, its daily average.

Every query is an index range scan whose cost does not grow with the table:
a direction's flights are read newest first from its index (arrivals by
``last_seen``, departures by ``first_seen``), and a page of both directions
merges the two scans. PostgreSQL builds each served flight's JSON, so a page
of 100 costs Python almost nothing.
"""

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import bindparam, func, literal_column, select, tuple_, union_all

from common.db.connections import autocommit_statements
from common.timeutil import isoformat_utc, isoformat_utc_sql, utc_now
from common.web.errors import ApiError
from common.web.pagination import INVALID_CURSOR_MESSAGE, json_item_rows
from data_collector.airports import airport_name
from data_collector.inputs import DIRECTIONS
from data_collector.models import CollectedDay, FlightData, FlightDayCount, db
from data_collector.planning import day_end, day_number


@dataclass(frozen=True)
class FlightCursor:
    """Where a page of flights ended: event time, row id and direction of the last item."""

    event_time: datetime
    flight_id: int
    direction: str

    @classmethod
    def from_key(cls, key: list) -> "FlightCursor":
        """Rebuild a cursor from a decoded sort key, or raise the pagination 400."""
        try:
            moment, flight_id, direction = key
            # bool is an int to Python, and ids are bigint to PostgreSQL.
            if type(flight_id) is not int or not 0 <= flight_id < 2**63:
                raise ValueError
            if direction not in DIRECTIONS:
                raise ValueError
            return cls(datetime.fromisoformat(moment), flight_id, direction)
        except (TypeError, ValueError):
            raise ApiError(400, INVALID_CURSOR_MESSAGE) from None

    @staticmethod
    def key_of(row) -> list:
        """Return the sort key of a served flight (a row of :func:`list_flights`)."""
        return [isoformat_utc(row.event_time), row.id, row.direction]


def _columns(direction: str):
    """Return (airport column, event time column) of a direction."""
    if direction == "arrival":
        return FlightData.est_arrival_airport, FlightData.last_seen
    return FlightData.est_departure_airport, FlightData.first_seen


@functools.cache
def _flights_statement(
    directions: tuple[str, ...], since: bool, until: bool, after_direction: str | None
):
    """Build (once per shape) the page query: one index range scan per direction, merged.

    Parameters: airport, limit, and since / until / after_time, after_id when
    the shape has them. Each row is (item JSON, event_time, id, direction);
    PostgreSQL builds the JSON, so a page of 100 costs Python almost nothing.
    """
    flights = FlightData.__table__
    branches = []
    for direction in directions:
        airport_column, event = _columns(direction)
        query = select(
            flights,
            event.label("event_time"),
            literal_column(f"'{direction}'").label("direction"),
        ).where(airport_column == bindparam("airport"))
        if since:
            query = query.where(event >= bindparam("since"))
        if until:
            query = query.where(event < bindparam("until"))
        if after_direction is not None:
            position = tuple_(event, FlightData.id)
            bound = tuple_(bindparam("after_time"), bindparam("after_id"))
            # Sort order is (event time, id, direction) descending.
            later = position <= bound if direction < after_direction else position < bound
            query = query.where(event <= bindparam("after_time"), later)
        branches.append(
            query.order_by(event.desc(), FlightData.id.desc()).limit(bindparam("limit"))
        )
    if len(branches) == 1:
        page = branches[0].subquery("page")
    else:
        merged = union_all(*branches).subquery("merged")
        page = (
            select(merged)
            .order_by(merged.c.event_time.desc(), merged.c.id.desc(), merged.c.direction.desc())
            .limit(bindparam("limit"))
            .subquery("page")
        )
    c = page.c
    fields = [
        c.icao24,
        isoformat_utc_sql(c.first_seen).label("first_seen"),
        c.est_departure_airport,
        isoformat_utc_sql(c.last_seen).label("last_seen"),
        c.est_arrival_airport,
        c.callsign,
        c.est_departure_airport_horiz_distance,
        c.est_departure_airport_vert_distance,
        c.est_arrival_airport_horiz_distance,
        c.est_arrival_airport_vert_distance,
        c.departure_airport_candidates_count,
        c.arrival_airport_candidates_count,
        c.direction.label("type"),
    ]
    return json_item_rows(
        page,
        fields,
        keys=[c.event_time, c.id, c.direction],
        order_by=[c.event_time.desc(), c.id.desc(), c.direction.desc()],
    )


def list_flights(
    *,
    airport: str,
    directions: tuple[str, ...],
    since: datetime | None = None,
    until: datetime | None = None,
    after: FlightCursor | None = None,
    limit: int,
) -> list:
    """Return up to ``limit`` flights at the airport, newest first, strictly after ``after``.

    An arrival's time is its ``last_seen``, a departure's its ``first_seen``;
    each direction is one range scan of its index, and with both the two
    scans are merged. Each row holds ``item`` (the served JSON object, with
    ``type``) and the sort key (``event_time``, ``id``, ``direction``).
    """
    statement = _flights_statement(
        directions, since is not None, until is not None, after.direction if after else None
    )
    params = {"airport": airport, "limit": limit, "since": since, "until": until}
    if after is not None:
        params.update(after_time=after.event_time, after_id=after.flight_id)
    autocommit_statements(db)
    return db.session.connection().execute(statement, params).all()


# Each collected (direction, day) of an airport in a date range, with its flight count:
# one round trip and one snapshot for the whole average.
MARKED_DAY_COUNTS = (
    select(
        CollectedDay.direction,
        CollectedDay.day,
        CollectedDay.fetched_until,
        func.coalesce(FlightDayCount.flights, 0).label("flights"),
    )
    .outerjoin(
        FlightDayCount,
        (FlightDayCount.airport_code == CollectedDay.airport_code)
        & (FlightDayCount.direction == CollectedDay.direction)
        & (FlightDayCount.day == CollectedDay.day),
    )
    .where(
        CollectedDay.airport_code == bindparam("airport"),
        CollectedDay.day >= bindparam("first"),
        CollectedDay.day <= bindparam("last"),
    )
)


def marked_day_counts(*, airport: str, first: date, last: date) -> dict:
    """Return {(direction, day): flights} for the days in [first, last] wholly collected."""
    counts = {}
    for row in db.session.execute(
        MARKED_DAY_COUNTS, {"airport": airport, "first": first, "last": last}
    ):
        if row.fetched_until.timestamp() >= day_end(day_number(row.day)):
            counts[(row.direction, row.day)] = row.flights
    return counts


def average_flights(*, airport: str, days: int, directions: tuple[str, ...]) -> dict:
    """Average flights per day over the last ``days`` whole UTC days that were collected.

    Today is left out (it is not over), and so is every day whose collection
    is incomplete for a requested direction: an average over days that were
    never fetched would pass missing data off as quiet days.
    """
    today = utc_now().date()
    first, last = today - timedelta(days=days), today - timedelta(days=1)
    start = datetime.combine(first, datetime.min.time(), UTC)
    end = datetime.combine(today, datetime.min.time(), UTC)
    autocommit_statements(db)
    counts = marked_day_counts(airport=airport, first=first, last=last)
    covered = set.intersection(
        *({day for (marked, day) in counts if marked == direction} for direction in directions)
    )
    result = {
        "airport": airport,
        "airport_name": airport_name(airport),
        "days_requested": days,
        "days_covered": len(covered),
        "window": {"from": isoformat_utc(start), "to": isoformat_utc(end)},
    }
    total = 0.0
    for direction in ("arrival", "departure"):
        if direction not in directions:
            continue
        flights = sum(counts[(direction, day)] for day in covered)
        per_day = flights / len(covered) if covered else None
        result[f"{direction}s_per_day"] = per_day
        total += per_day or 0.0
    result["average_flights_per_day"] = total if covered else None
    return result

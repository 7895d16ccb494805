"""Flight queries: an airport's flights page by page, its last flight, its daily average.

Every query is an index range scan whose cost does not grow with the table:
a direction's flights are read newest first from its index (arrivals by
``last_seen``, departures by ``first_seen``), and a page of both directions
merges the two scans. PostgreSQL builds each served flight's JSON, so a page
of 100 costs Python almost nothing. An average reads its whole days from
``flight_day_counts`` and counts only the parts of days at its window's ends.
"""

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    DateTime,
    String,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    tuple_,
    union_all,
)

from common.airports import airport_name
from common.db.connections import autocommit_statements
from common.timeutil import (
    DAY,
    day_date,
    day_number,
    day_start,
    isoformat_utc,
    isoformat_utc_sql,
    utc_now,
)
from common.web.errors import ApiError
from common.web.pagination import INVALID_CURSOR_MESSAGE, cursor_time, json_item_rows
from data_collector.inputs import DIRECTIONS
from data_collector.models import CollectedDay, FlightData, FlightDayCount, UserInterest, db


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
            return cls(cursor_time(moment), flight_id, direction)
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
    return json_item_rows(
        page,
        [*_served_fields(c), c.direction.label("type")],
        keys=[c.event_time, c.id, c.direction],
        order_by=[c.event_time.desc(), c.id.desc(), c.direction.desc()],
    )


def _served_fields(c) -> list:
    """Return the columns of a served flight, named and ordered as in ``flight_data``."""
    return [
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
    ]


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


@dataclass(frozen=True)
class AirportFlightCursor:
    """Where a page of flights at several airports ended: the last item's sort key."""

    event_time: datetime
    flight_id: int
    airport: str
    direction: str

    @classmethod
    def from_key(cls, key: list) -> "AirportFlightCursor":
        """Rebuild a cursor from a decoded sort key, or raise the pagination 400."""
        try:
            moment, flight_id, airport, direction = key
            if type(flight_id) is not int or not 0 <= flight_id < 2**63:
                raise ValueError
            # As the airport columns hold them: at most 8 printable ASCII characters.
            if not isinstance(airport, str) or not 0 < len(airport) <= 8:
                raise ValueError
            if not (airport.isascii() and airport.isprintable()) or direction not in DIRECTIONS:
                raise ValueError
            return cls(cursor_time(moment), flight_id, airport, direction)
        except (TypeError, ValueError):
            raise ApiError(400, INVALID_CURSOR_MESSAGE) from None

    @staticmethod
    def key_of(row) -> list:
        """Return the sort key of a served flight (a row of :func:`list_airport_flights`)."""
        return [isoformat_utc(row.event_time), row.id, row.airport, row.direction]


# The airports a user follows, each then read with its own index range scans.
FOLLOWED_AIRPORTS = (
    select(UserInterest.airport_code)
    .where(UserInterest.user_email == bindparam("email"))
    .order_by(UserInterest.airport_code)
)


@functools.lru_cache(maxsize=256)
def _airport_flights_statement(
    airports: int | None, directions: tuple[str, ...], since: bool, until: bool, after: bool
):
    """Build (once per shape) a page of flights at ``airports`` airports, or at every airport.

    With ``airports`` (parameters ``airport_0`` ...): one index range scan per
    airport and direction, each with its LIMIT, merged, as many branches as
    ``/flights/<airport>`` has for one. The airports are values, not a join,
    so PostgreSQL plans each scan with that airport's own statistics: a quiet
    airport is never read by time across the whole table. With ``None``: one
    range scan per direction of every stored flight by its time
    (``ix_flight_data_last_seen``, ``ix_flight_data_first_seen``). Other
    parameters: limit, and since / until / after_* when the shape has them.
    Rows are (item JSON, event_time, id, airport, direction).
    """
    flights = FlightData.__table__
    branches = []
    for direction in directions:
        airport_column, event = _columns(direction)
        kind = literal_column(f"'{direction}'", String)
        for airport in range(airports) if airports is not None else [None]:
            if airport is None:
                code = airport_column
                query = select(flights, event.label("event_time"), code.label("airport"))
                query = query.where(code.is_not(None))
            else:
                code = bindparam(f"airport_{airport}", type_=String)
                query = select(flights, event.label("event_time"), code.label("airport"))
                query = query.where(airport_column == code)
            query = query.add_columns(kind.label("direction"))
            if since:
                query = query.where(event >= bindparam("since"))
            if until:
                query = query.where(event < bindparam("until"))
            if after:
                # Sort order is (event time, id, airport, direction) descending; the first
                # condition is the one the index serves.
                position = tuple_(event, FlightData.id, code, kind)
                bound = tuple_(
                    *(bindparam(f"after_{k}") for k in ("time", "id", "airport", "kind"))
                )
                query = query.where(event <= bindparam("after_time"), position < bound)
            branches.append(
                query.order_by(event.desc(), FlightData.id.desc()).limit(bindparam("limit"))
            )
    merged = union_all(*branches).subquery("merged")
    m = merged.c
    order = [m.event_time.desc(), m.id.desc(), m.airport.desc(), m.direction.desc()]
    page = select(merged).order_by(*order).limit(bindparam("limit")).subquery("page")
    c = page.c
    return json_item_rows(
        page,
        [*_served_fields(c), c.airport, c.direction.label("type")],
        keys=[c.event_time, c.id, c.airport, c.direction],
        order_by=[c.event_time.desc(), c.id.desc(), c.airport.desc(), c.direction.desc()],
    )


def list_airport_flights(
    *,
    email: str | None,
    directions: tuple[str, ...],
    since: datetime | None = None,
    until: datetime | None = None,
    after: AirportFlightCursor | None = None,
    limit: int,
) -> list:
    """Return up to ``limit`` flights at the airports ``email`` follows (None: at every airport).

    Newest first, strictly after ``after``, with the same times as
    :func:`list_flights`. A flight is served once per airport and direction
    it has there: a flight between two followed airports is a departure
    from one and an arrival at the other. Each row holds ``item`` (the
    served JSON object, with ``airport`` and ``type``) and the sort key.
    """
    autocommit_statements(db)
    connection = db.session.connection()
    params = {"limit": limit, "since": since, "until": until}
    airports = None
    if email is not None:
        followed = connection.execute(FOLLOWED_AIRPORTS, {"email": email}).scalars().all()
        if not followed:
            return []
        airports = len(followed)
        params.update({f"airport_{i}": code for i, code in enumerate(followed)})
    if after is not None:
        params.update(
            after_time=after.event_time,
            after_id=after.flight_id,
            after_airport=after.airport,
            after_kind=after.direction,
        )
    statement = _airport_flights_statement(
        airports, directions, since is not None, until is not None, after is not None
    )
    return connection.execute(statement, params).all()


# Every mark of an airport (at most two per day of retention): what was collected, up to when.
AIRPORT_MARKS = select(CollectedDay.direction, CollectedDay.day, CollectedDay.fetched_until).where(
    CollectedDay.airport_code == bindparam("airport")
)
# A flights-per-day figure is worth two decimals; days covered four (about nine seconds).
PER_DAY_DECIMALS = 2
DAYS_DECIMALS = 4


@functools.cache
def _count_statement(directions: tuple[str, ...]):
    """Build (once per shape) the count of an average: one column of flights per direction.

    Parameters: airport, and per direction ``<direction>_days`` (whole UTC
    days, read from ``flight_day_counts``), ``<direction>_from`` and
    ``<direction>_to`` (the parts of days, ``[from, to)``, counted with one
    index range scan each). Every cost is the window's, not the table's.
    """
    columns = []
    for direction in directions:
        airport_column, event = _columns(direction)
        whole = (
            select(func.coalesce(func.sum(FlightDayCount.flights), 0))
            .where(
                FlightDayCount.airport_code == bindparam("airport"),
                FlightDayCount.direction == direction,
                FlightDayCount.day == any_(cast(bindparam(f"{direction}_days"), ARRAY(Date))),
            )
            .scalar_subquery()
        )
        moments = ARRAY(DateTime(timezone=True))
        parts = (
            func.unnest(
                cast(bindparam(f"{direction}_from"), moments),
                cast(bindparam(f"{direction}_to"), moments),
            )
            .table_valued("lo", "hi")
            .render_derived(name="parts")
        )
        partial = (
            select(func.count())
            .select_from(parts)
            .join(
                FlightData,
                (airport_column == bindparam("airport"))
                & (event >= parts.c.lo)
                & (event < parts.c.hi),
            )
            .scalar_subquery()
        )
        columns.append(cast(whole + partial, BigInteger).label(direction))
    return select(*columns)


@dataclass
class Coverage:
    """What of an average's window was collected for one direction."""

    whole_days: list[date]
    parts: list[tuple[datetime, datetime]]  # [from, to) within single days
    seconds: float


def _coverage(marks: dict[int, int], start: float, end: float) -> Coverage:
    """Intersect a direction's marks ({day: last second fetched}) with ``[start, end)``.

    A day's mark says every second from the day's start up to its last
    fetched second was fetched.
    """
    coverage = Coverage([], [], 0.0)
    for day, fetched_until in sorted(marks.items()):
        lo, hi = max(day_start(day), start), min(fetched_until + 1, end)
        if hi <= lo:
            continue
        coverage.seconds += hi - lo
        if lo == day_start(day) and hi == day_start(day + 1):
            coverage.whole_days.append(day_date(day))
        else:
            coverage.parts.append(
                (datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC))
            )
    return coverage


def average_flights(*, airport: str, days: int, directions: tuple[str, ...]) -> dict:
    """Average flights per day over the last ``days`` times 24 hours that were collected.

    The window ends where collection has reached for every requested
    direction (never after now; now when nothing was collected), so a flight
    of the last hours counts, and it starts ``days`` times 24 hours earlier. A
    flight counts at its time at the airport (an arrival's ``last_seen``, a
    departure's ``first_seen``), once per direction, as the list of flights
    shows it. Only the collected part of the window is counted, and each
    direction's figure divides by that part, in days: a gap (a backfill still
    running, days lost to retention or to failures) is never a quiet day.
    """
    now = utc_now().timestamp()
    autocommit_statements(db)
    marks: dict[str, dict[int, int]] = {direction: {} for direction in directions}
    for row in db.session.execute(AIRPORT_MARKS, {"airport": airport}):
        if row.direction in marks:
            marks[row.direction][day_number(row.day)] = int(row.fetched_until.timestamp())
    reached = [max(fetched.values()) + 1 for fetched in marks.values() if fetched]
    end = min([now, *reached]) if reached else now
    start = end - days * DAY
    covered = {d: _coverage(marks[d], start, end) for d in directions}
    params: dict = {"airport": airport}
    for direction, coverage in covered.items():
        params[f"{direction}_days"] = coverage.whole_days
        params[f"{direction}_from"] = [lo for lo, _hi in coverage.parts]
        params[f"{direction}_to"] = [hi for _lo, hi in coverage.parts]
    counted = db.session.execute(_count_statement(directions), params).one()._mapping

    result = {
        "airport": airport,
        "airport_name": airport_name(airport),
        "days_requested": days,
        "window": {
            "from": isoformat_utc(datetime.fromtimestamp(start, UTC)),
            "to": isoformat_utc(datetime.fromtimestamp(end, UTC)),
            "ends_at": "last collection" if reached else "now",
        },
    }
    least_covered = min(coverage.seconds for coverage in covered.values())
    result["days_covered"] = round(least_covered / DAY, DAYS_DECIMALS)
    result["coverage"] = round(least_covered / (days * DAY), DAYS_DECIMALS)
    total: float | None = 0.0
    for direction, coverage in covered.items():
        flights = counted[direction]
        per_day = (
            round(flights * DAY / coverage.seconds, PER_DAY_DECIMALS) if coverage.seconds else None
        )
        result[f"{direction}s"] = {
            "flights": flights,
            "days_covered": round(coverage.seconds / DAY, DAYS_DECIMALS),
            "per_day": per_day,
        }
        result[f"{direction}s_per_day"] = per_day
        total = None if total is None or per_day is None else total + per_day
    result["average_flights_per_day"] = None if total is None else round(total, PER_DAY_DECIMALS)
    return result

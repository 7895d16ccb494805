"""Data Collector business logic: interests, the user check, flight queries, health."""

import functools
import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, StrictStr, field_validator
from sqlalchemy import (
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
    tuple_,
    union_all,
)

from common.db_connections import autocommit_statements
from common.errors import ApiError
from common.grpc_client import GrpcPeer, PeerUnavailableError
from common.pagination import INVALID_CURSOR_MESSAGE, json_item_rows
from common.rpc import flight_tracker_pb2
from common.timeutil import isoformat_utc, isoformat_utc_sql, utc_now
from common.validation import normalize_email
from data_collector.airports import airport_name, normalize_airport_code
from data_collector.cycle_requests import request_collection
from data_collector.models import (
    CollectedDay,
    CollectorState,
    FlightData,
    FlightDayCount,
    UserInterest,
    db,
)
from data_collector.planning import DAY

log = logging.getLogger(__name__)

# The ``type`` query parameter and the direction each value stands for.
FLIGHT_TYPES = {"arrivals": "arrival", "departures": "departure"}
UNIX_SECONDS = re.compile(r"[0-9]{1,11}(\.[0-9]{1,6})?")
# Reconciliation leaves interests younger than this alone: far longer than any
# POST /interests takes between its user check and its insert (at most the gRPC
# deadline plus the request timeout, about half a minute).
RECONCILE_GRACE = timedelta(minutes=10)
# Users per query; each costs one CheckUserExists call (a primary-key lookup).
RECONCILE_BATCH = 500


def path_airport_code(value: str) -> str:
    """Normalize an airport code from a URL, or raise a 400 saying why it is refused."""
    try:
        return normalize_airport_code(value)
    except ValueError as error:
        raise ApiError(400, f"Invalid airport code '{value}': {error}.") from None


class InterestRequest(BaseModel):
    """The body of ``POST /interests`` and ``DELETE /interests``."""

    model_config = ConfigDict(extra="forbid")

    email: StrictStr
    airport_code: StrictStr

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalize_email(value.strip())

    @field_validator("airport_code")
    @classmethod
    def _airport_code(cls, value: str) -> str:
        return normalize_airport_code(value)


def require_existing_user(*, peer: GrpcPeer, email: str) -> None:
    """Ask the User Manager whether the user exists: 404 if not, 503 if it cannot answer."""
    import grpc  # the call loads it anyway; not imported with the module (memory, README)

    try:
        reply = peer.call(
            "CheckUserExists", flight_tracker_pb2.UserRequest(email=email), wait_for_ready=True
        )
    except (PeerUnavailableError, grpc.RpcError) as error:
        # Any failure means "cannot check now": never assume the user exists, never a 500.
        code = error.code() if callable(getattr(error, "code", None)) else None
        log.warning(
            "User Manager cannot answer CheckUserExists (%s): %s",
            code.name if code else "UNAVAILABLE",
            error,
        )
        raise ApiError(
            503,
            "The User Manager is unavailable, so the user cannot be checked; try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    if not reply.exists:
        raise ApiError(404, "User not found")


# POST /interests in one statement (built once): store the interest unless it exists, and
# for a new one ask the worker for a collection cycle (the one pending collection_requests
# row, which requests coalesce into; see CollectionRequest).
ADD_INTEREST = text(
    """
    WITH new_interest AS (
        INSERT INTO user_interests (user_email, airport_code, created_at)
        VALUES (:user_email, :airport_code, :created_at)
        ON CONFLICT ON CONSTRAINT uq_user_interests_user_airport DO NOTHING
        RETURNING 1
    ), requested AS (
        INSERT INTO collection_requests (taken)
        SELECT false FROM new_interest
        ON CONFLICT (taken) WHERE NOT taken DO NOTHING
    )
    SELECT EXISTS (SELECT FROM new_interest) AS added
    """
)


def add_interest(*, email: str, airport_code: str) -> bool:
    """Store the interest once; return whether it is new.

    A new interest also asks the worker for a collection cycle, in the same
    statement (so both or neither): the request answers at once, and the
    airport's flights start arriving within ``COLLECT_POLL_SECONDS`` plus the
    time OpenSky takes. One statement is atomic by itself, so it runs without
    BEGIN and COMMIT round trips.
    """
    autocommit_statements(db)
    added = (
        db.session.connection()
        .execute(
            ADD_INTEREST,
            {"user_email": email, "airport_code": airport_code, "created_at": utc_now()},
        )
        .scalar_one()
    )
    # Sends nothing in autocommit; commits if the statement joined an open transaction.
    db.session.commit()
    return added


def remove_interest(*, email: str, airport_code: str) -> bool:
    """Delete one interest; return whether it existed."""
    deleted = db.session.execute(
        delete(UserInterest)
        .where(UserInterest.user_email == email, UserInterest.airport_code == airport_code)
        .returning(UserInterest.id)
    ).first()
    db.session.commit()
    return deleted is not None


def list_interests(*, email: str) -> list[UserInterest]:
    """Return the user's interests ordered by airport code."""
    query = (
        select(UserInterest)
        .where(UserInterest.user_email == email)
        .order_by(UserInterest.airport_code)
    )
    return list(db.session.scalars(query))


def delete_user_interests(*, email: str) -> int:
    """Delete every interest of the user (idempotent); return how many went."""
    try:
        normalized = normalize_email(email)
    except ValueError:
        return 0
    result = db.session.execute(delete(UserInterest).where(UserInterest.user_email == normalized))
    db.session.commit()
    return result.rowcount


def reconcile_interests(*, peer: GrpcPeer, batch: int = RECONCILE_BATCH) -> int:
    """Delete the interests of users the User Manager no longer knows; return how many went.

    ``POST /interests`` checks the user, then inserts: if the user is deleted
    in between (and ``DeleteUserInterests`` has already run), the interest is
    orphaned and would cost credits forever. Only interests older than
    ``RECONCILE_GRACE`` are looked at, so one being added right now is left
    alone. Users are read in batches, with no transaction open during the
    calls; the first call the User Manager cannot answer ends the run, so
    nothing is deleted on doubt.
    """
    import grpc  # only the worker reconciles; web workers load it on their first user check

    cutoff = utc_now() - RECONCILE_GRACE
    old = UserInterest.created_at < cutoff
    removed, after = 0, ""
    while True:
        emails = db.session.scalars(
            select(UserInterest.user_email)
            .where(old, UserInterest.user_email > after)
            .group_by(UserInterest.user_email)
            .order_by(UserInterest.user_email)
            .limit(batch)
        ).all()
        db.session.commit()
        for email in emails:
            try:
                request = flight_tracker_pb2.UserRequest(email=email)
                exists = peer.call("CheckUserExists", request).exists
            except (PeerUnavailableError, grpc.RpcError) as error:
                log.warning(
                    "interest reconciliation stopped: the User Manager cannot answer: %s", error
                )
                return removed
            if exists:
                continue
            airports = db.session.scalars(
                delete(UserInterest)
                .where(UserInterest.user_email == email, old)
                .returning(UserInterest.airport_code)
            ).all()
            db.session.commit()
            if airports:
                log.warning(
                    "removed the interests of %s, a user that no longer exists: %s",
                    email,
                    ", ".join(sorted(airports)),
                )
                removed += len(airports)
        if len(emails) < batch:
            return removed
        after = emails[-1]


def request_cycle() -> None:
    """Ask the worker for a collection cycle soon (ops; it fetches only what is due)."""
    request_collection()
    db.session.commit()


# --- Flight queries ------------------------------------------------------------------


def flight_types(raw: str | None) -> tuple[str, ...]:
    """Return the directions a ``type`` parameter asks for (none: both), or raise a 400.

    An empty ``type=`` is refused like any other unknown value (as ``limit=`` and
    ``days=`` are): leave the parameter out to get both directions.
    """
    if raw is None:
        return ("arrival", "departure")
    if raw not in FLIGHT_TYPES:
        raise ApiError(400, "type must be arrivals or departures.", details={"type": raw})
    return (FLIGHT_TYPES[raw],)


def parse_instant(name: str, raw: str | None) -> datetime | None:
    """Read an ISO 8601 time (UTC when it names no offset) or Unix seconds, or raise a 400."""
    if raw is None or raw == "":
        return None
    try:
        if UNIX_SECONDS.fullmatch(raw):
            return datetime.fromtimestamp(float(raw), UTC)
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ApiError(
            400,
            f"{name} must be an ISO 8601 time (e.g. 2026-01-31T12:00:00Z) or Unix seconds.",
            details={name: raw},
        ) from None


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
            if direction not in FLIGHT_TYPES.values():
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
        day_end = datetime.combine(row.day, datetime.min.time(), UTC) + timedelta(seconds=DAY - 1)
        if row.fetched_until >= day_end:
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


# --- Health ----------------------------------------------------------------------------


def opensky_facts() -> dict | None:
    """Return the ``opensky`` part of ``/health``: credits, rate-limit wait, the last cycle."""
    state = db.session.get(CollectorState, 1)
    return state.to_dict() if state is not None else None

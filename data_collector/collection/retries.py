"""Ranges whose fetch failed, and when OpenSky is asked for them again (``collection_retries``).

The OpenSky client already retries a request a few times within seconds
(timeouts, 5xx, malformed bodies). A range that still fails is asked for
again on its own schedule, independently of the periodic cycle: after
``COLLECT_RETRY_FIRST_SECONDS``, then twice as long after each further
failure, never longer than ``COLLECT_RETRY_MAX_SECONDS``. The worker's poll
runs a cycle as soon as a retry is due (:func:`due`); a cycle plans as
usual and sends a planned request only when no retry overlapping it is
still waiting, so a failing range is never asked for more often than its
schedule says, whatever else asks for cycles. A 429 is not a failure of a
range: it stops the cycle, and its wait (``collector_state.not_before``)
holds back every request, retries included.

A success clears the retries it overlaps, in the transaction that stores
its flights. Retries the plan no longer asks for (the airport is no longer
followed, the day left the backfill window, the sweep took over) are
dropped when a cycle plans. Times are Unix seconds here, as in the whole
cycle, converted at this module's database edge (:mod:`common.timeutil`). Every function runs in the
caller's transaction; the caller commits.
"""

from dataclasses import dataclass

from sqlalchemy import and_, delete, exists, func, insert, select

from common.timeutil import isoformat_utc, moment, unix_seconds
from data_collector.collection.planning import Range
from data_collector.models import CollectionRetry, db

# /health lists the retries due soonest; the count and the next due time cover the rest.
HEALTH_LIST_LIMIT = 20
# last_error's column length.
ERROR_LENGTH = 500
RETRIES = CollectionRetry.__table__


@dataclass(frozen=True)
class Retry:
    """A failed range: how often it failed in a row, and when it may be asked for again."""

    range: Range
    attempts: int
    first_failed_at: float
    next_attempt_at: float
    last_error: str


def delay_seconds(attempts: int, *, first: float, maximum: float) -> float:
    """Return the wait after the ``attempts``-th failure in a row: doubling, capped."""
    return min(first * 2 ** (attempts - 1), maximum)


class Schedule:
    """The retries one cycle works with: loaded when it starts, kept in step with the table."""

    def __init__(self, *, first: float, maximum: float):
        self.first = first
        self.maximum = maximum
        rows = db.session.execute(select(RETRIES))
        self.retries: list[Retry] = [_retry_of(row) for row in rows]

    def waiting(self, wanted: Range, now: float) -> Retry | None:
        """Return a retry overlapping ``wanted`` that is not due yet, if any."""
        return next(
            (r for r in self.retries if r.range.overlaps(wanted) and r.next_attempt_at > now),
            None,
        )

    def keep_only(self, planned: list[Range]) -> int:
        """Drop the retries that overlap no planned range; return how many went."""
        stale = [r for r in self.retries if not any(r.range.overlaps(p) for p in planned)]
        for retry in stale:
            db.session.execute(delete(RETRIES).where(_key_is(retry.range)))
        self.retries = [r for r in self.retries if r not in stale]
        return len(stale)

    def succeeded(self, fetched: Range) -> None:
        """Clear the retries the fetched range overlaps (store it with the range's flights)."""
        if any(r.range.overlaps(fetched) for r in self.retries):
            db.session.execute(delete(RETRIES).where(_overlapping(fetched)))
            self.retries = [r for r in self.retries if not r.range.overlaps(fetched)]

    def failed(self, failed: Range, *, error: str, now: float) -> Retry:
        """Record that ``failed`` failed at ``now``; return its retry, with when it is due.

        The retries it overlaps are replaced by one for this range, one
        attempt further along their schedule.
        """
        earlier = [r for r in self.retries if r.range.overlaps(failed)]
        attempts = 1 + max((r.attempts for r in earlier), default=0)
        first_failed_at = min((r.first_failed_at for r in earlier), default=now)
        delay = delay_seconds(attempts, first=self.first, maximum=self.maximum)
        retry = Retry(failed, attempts, first_failed_at, now + delay, error[:ERROR_LENGTH])
        db.session.execute(delete(RETRIES).where(_overlapping(failed)))
        db.session.execute(
            insert(RETRIES).values(
                endpoint=failed.endpoint,
                airport_code=failed.airport,
                range_begin=moment(failed.begin),
                range_end=moment(failed.end),
                attempts=attempts,
                first_failed_at=moment(first_failed_at),
                next_attempt_at=moment(retry.next_attempt_at),
                last_error=retry.last_error,
            )
        )
        self.retries = [r for r in self.retries if r not in earlier] + [retry]
        return retry


def postpone_overdue(*, due_by: float, now: float, first: float, maximum: float) -> int:
    """Give the retries a cycle left untried their next wait; return how many there were.

    Those due by ``due_by`` (when the cycle started) and still there: a
    cycle that stopped before reaching them (refused credentials, an
    unexpected failure) would otherwise leave them due, and the poll would
    run a cycle for them every few seconds. One that fell due during the
    cycle is left for the next poll.
    """
    overdue = db.session.scalars(
        select(CollectionRetry).where(CollectionRetry.next_attempt_at <= moment(due_by))
    ).all()
    for row in overdue:
        row.next_attempt_at = moment(
            now + delay_seconds(row.attempts, first=first, maximum=maximum)
        )
    return len(overdue)


def due(now: float):
    """Return the SQL condition "a retry is due at ``now``" (for the worker's poll)."""
    soon = select(CollectionRetry.endpoint).where(CollectionRetry.next_attempt_at <= moment(now))
    return exists(soon)


def waiting_count_and_next() -> tuple[int, float | None]:
    """Return how many retries wait, and when the next is due (Unix seconds; None: none)."""
    count, next_at = db.session.execute(
        select(func.count(), func.min(RETRIES.c.next_attempt_at))
    ).one()
    return count, unix_seconds(next_at) if next_at is not None else None


def summary() -> dict:
    """Return the ``retries`` part of ``/health``: how many wait, the next due, the soonest."""
    rows = db.session.execute(
        select(RETRIES).order_by(RETRIES.c.next_attempt_at).limit(HEALTH_LIST_LIMIT)
    ).all()
    waiting = len(rows)
    if waiting == HEALTH_LIST_LIMIT:
        waiting, _next = waiting_count_and_next()
    return {
        "waiting": waiting,
        "next_attempt_at": isoformat_utc(rows[0].next_attempt_at) if rows else None,
        "ranges": [
            {
                "endpoint": row.endpoint,
                "airport": row.airport_code or None,
                "begin": isoformat_utc(row.range_begin),
                "end": isoformat_utc(row.range_end),
                "attempts": row.attempts,
                "first_failed_at": isoformat_utc(row.first_failed_at),
                "next_attempt_at": isoformat_utc(row.next_attempt_at),
                "last_error": row.last_error,
            }
            for row in rows
        ],
    }


def _retry_of(row) -> Retry:
    return Retry(
        Range(
            row.endpoint,
            row.airport_code,
            int(unix_seconds(row.range_begin)),
            int(unix_seconds(row.range_end)),
        ),
        row.attempts,
        unix_seconds(row.first_failed_at),
        unix_seconds(row.next_attempt_at),
        row.last_error,
    )


def _overlapping(wanted: Range):
    c = RETRIES.c
    return and_(
        c.endpoint == wanted.endpoint,
        c.airport_code == wanted.airport,
        c.range_begin <= moment(wanted.end),
        c.range_end >= moment(wanted.begin),
    )


def _key_is(retry: Range):
    c = RETRIES.c
    return and_(
        c.endpoint == retry.endpoint,
        c.airport_code == retry.airport,
        # The range's first second (a row written by hand may hold a fraction of it).
        c.range_begin >= moment(retry.begin),
        c.range_begin < moment(retry.begin + 1),
    )

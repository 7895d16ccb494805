"""One collection cycle: plan from the stored marks, fetch from OpenSky, store as it goes.

Single runner across processes and replicas
-------------------------------------------
A cycle runs only while its process holds the advisory lock
``COLLECTION_LOCK_ID``, taken with ``pg_try_advisory_lock`` on a connection
of its own: opened for the cycle outside the connection pool (``NullPool``),
used for nothing else, unlocked and closed when the cycle ends. A
session-level lock is safe here because that connection is never shared or
reused: no pooled connection can carry the lock into someone else's work,
and if the process dies the server closes the connection and the lock goes
with it (TCP keepalives detect a vanished host). Unlike a transaction-scoped
lock it needs no transaction left open, idle, for the whole cycle, which an
``idle_in_transaction_session_timeout`` (common on managed PostgreSQL) would
silently kill, releasing the lock mid-cycle. Another process that finds the
lock taken skips its cycle: the one running covers every followed airport.

Exactly once per period: every replica's worker runs the periodic cycle on
its own schedule, so under the lock a periodic cycle is skipped when another
periodic one started within the period (``last_periodic_cycle_started_at``
in ``collector_state``). Requested cycles (a new interest, a due retry)
always run, and do not postpone the periodic one: one an hour after a
periodic cycle would otherwise push the next to a day later.

One range at a time
-------------------
Inside the lock, :class:`Cycle` fetches each planned range and stores its
flights and its marks in ``collected_days`` in one transaction. A crash
mid-cycle therefore loses nothing already stored and leaves no range marked
that was not stored. Sweep windows store their flights as they arrive; the
sweep's marks are written only once the whole day is in. Times inside the
cycle are planning's: Unix seconds and UTC day numbers
(:mod:`data_collector.flight_store` converts at the database's edge).

A range that fails (OpenSky still failing after the client's attempts, or
flights the database refuses) is recorded in ``collection_retries`` and
asked for again on its own schedule (:mod:`data_collector.retries`): the
worker's poll runs a cycle when one is due, and every cycle leaves alone
the ranges whose retry is not due yet.

A 429 stops the cycle and stores "not before" in ``collector_state``, which
every process checks before asking OpenSky anything.
"""

import functools
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta

import psycopg2
from flask import current_app
from sqlalchemy import create_engine, delete, exists, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from common.timeutil import utc_now
from data_collector import flight_store, planning, retries
from data_collector.cycle_requests import request_collection
from data_collector.models import CollectionRequest, CollectorState, db
from data_collector.opensky import (
    CredentialsRefusedError,
    OpenSkyClient,
    OpenSkyError,
    RateLimitedError,
)

log = logging.getLogger(__name__)

# Arbitrary constant shared by every replica; distinct from the migration lock.
COLLECTION_LOCK_ID = 7_404_002
# A database that does not answer fails the cycle in seconds instead of hanging the worker.
LOCK_CONNECT_TIMEOUT_SECONDS = 10
# A periodic cycle is skipped when another started less than this share of the
# interval ago: the margin absorbs scheduler jitter, so a replica never skips
# the cycle that is its own turn.
PERIOD_SHARE = 0.9
# Failures that stop the whole cycle rather than one range: waiting is the only way on.
# OperationalError twice: SQLAlchemy's, and psycopg2's own from execute_values.
STOPS_THE_CYCLE = (
    RateLimitedError,
    CredentialsRefusedError,
    OperationalError,
    psycopg2.OperationalError,
)


@dataclass
class CycleResult:
    """What a cycle did, for logs, ``GET /health`` and ``worker --once``."""

    outcome: str  # done, partial, failed, rate-limited, busy, waiting, skipped
    mode: str | None = None
    requests: int = 0
    credits: int = 0
    flights: int = 0
    # Planned ranges left alone because their retry is not due yet.
    deferred: int = 0
    # Planned requests left for another day: today's credits would not cover them.
    over_budget: int = 0
    planned_requests: int = 0
    per_airport_cost: int | None = None
    sweep_cost: int | None = None


def policy_from_config(config) -> planning.Policy:
    """Build the planning policy from the app's configuration."""
    return planning.Policy(
        backfill_days=config["COLLECT_BACKFILL_DAYS"],
        refresh_days=config["COLLECT_REFRESH_DAYS"],
        min_gap_seconds=config["COLLECT_MIN_GAP_MINUTES"] * 60,
        sweep=config["COLLECT_SWEEP"] == "auto",
    )


def client_from_config(config) -> OpenSkyClient:
    """Build the OpenSky client from the app's configuration."""
    return OpenSkyClient(
        api_url=config["OPENSKY_API_URL"],
        token_url=config["OPENSKY_TOKEN_URL"],
        client_id=config["OPENSKY_CLIENT_ID"],
        client_secret=config["OPENSKY_CLIENT_SECRET"],
        timeout=config["OPENSKY_TIMEOUT_SECONDS"],
        max_attempts=config["OPENSKY_MAX_ATTEMPTS"],
        backoff_seconds=config["OPENSKY_RETRY_BACKOFF_SECONDS"],
        token_margin_seconds=config["OPENSKY_TOKEN_MARGIN_SECONDS"],
    )


@functools.cache
def _lock_engine(url: str) -> Engine:
    return create_engine(
        url,
        poolclass=NullPool,
        # No transaction is left open on this connection (see the module docstring).
        isolation_level="AUTOCOMMIT",
        connect_args={
            "connect_timeout": LOCK_CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
        },
    )


@contextmanager
def cycle_lock() -> Iterator[bool]:
    """Hold the collection lock for the duration of the block; yield whether it was free."""
    engine = _lock_engine(current_app.config["SQLALCHEMY_DATABASE_URI"])
    with engine.connect() as connection:
        lock = {"id": COLLECTION_LOCK_ID}
        acquired = connection.execute(text("SELECT pg_try_advisory_lock(:id)"), lock).scalar()
        try:
            yield bool(acquired)
        finally:
            # Closing the connection would release it too; unlocking says if it was lost.
            if (
                acquired
                and not connection.execute(text("SELECT pg_advisory_unlock(:id)"), lock).scalar()
            ):
                log.error("the collection lock was lost during the cycle")


def collection_pending() -> bool:
    """Tell whether a cycle was asked for or a retry is due, and OpenSky may be asked now."""
    state = flight_store.state()
    if _waiting_for_opensky(state) or state.over_budget_on == utc_now().date():
        return False
    asked = exists(select(CollectionRequest.id).where(~CollectionRequest.taken))
    return bool(db.session.scalar(select(or_(asked, retries.due(time.time())))))


def run_cycle(*, client: OpenSkyClient, periodic: bool = False) -> CycleResult:
    """Run one cycle if no other process is running one and OpenSky is not to be waited for.

    ``periodic``: the scheduled cycle, skipped if any replica started one
    within the current period.
    """
    with cycle_lock() as acquired:
        if not acquired:
            log.info("another process is collecting; skipping this cycle")
            return CycleResult("busy")
        # What this session read before the lock may be stale: another replica may
        # have just stored a 429's "not before" or finished a cycle.
        db.session.expire_all()
        state = flight_store.state()
        if _waiting_for_opensky(state):
            log.info("OpenSky asked us to wait until %s; skipping this cycle", state.not_before)
            db.session.rollback()
            return CycleResult("waiting")
        if periodic and _cycle_started_this_period(state):
            log.info(
                "a periodic cycle started at %s, within this period; skipping this one",
                state.last_periodic_cycle_started_at,
            )
            db.session.rollback()
            return CycleResult("skipped")
        # The requests this cycle answers: exactly these rows are deleted at its end.
        taken = db.session.scalars(
            update(CollectionRequest).values(taken=True).returning(CollectionRequest.id)
        ).all()
        state.last_cycle_started_at = utc_now()
        if periodic:
            state.last_periodic_cycle_started_at = state.last_cycle_started_at
        state.last_cycle_finished_at = None
        state.last_cycle_outcome = "running"
        db.session.commit()

        result = CycleResult("done")
        try:
            Cycle(client, current_app.config, result).run()
        except Exception:
            log.exception("collection cycle failed")
            result.outcome = "failed"
        finally:
            # Whatever happened, the cycle ends here: the requests it answered are
            # consumed and its outcome recorded. A failure that repeats would
            # otherwise be retried every COLLECT_POLL_SECONDS, spending credits.
            db.session.rollback()
            _finish(result, taken)
        return result


def _waiting_for_opensky(state: CollectorState) -> bool:
    return state.not_before is not None and state.not_before > utc_now()


def _cycle_started_this_period(state: CollectorState) -> bool:
    """Tell whether a periodic cycle started within the period (and no cycle died running)."""
    started = state.last_periodic_cycle_started_at
    if started is None or state.last_cycle_outcome == "running":
        return False
    period = timedelta(minutes=current_app.config["COLLECT_INTERVAL_MINUTES"]) * PERIOD_SHARE
    return utc_now() - started < period


def _finish(result: CycleResult, taken: list[int]) -> None:
    """Consume the requests the cycle answered, apply retention, record the outcome."""
    db.session.execute(delete(CollectionRequest).where(CollectionRequest.id.in_(taken)))
    state = flight_store.state()
    if result.over_budget:
        state.over_budget_on = utc_now().date()
    if result.outcome == "rate-limited" or result.over_budget:
        request_collection()  # resume as soon as the wait is over, or the next UTC day
    if result.outcome != "rate-limited":
        config = current_app.config
        retries.postpone_overdue(
            due_by=state.last_cycle_started_at.timestamp(),
            now=time.time(),
            first=config["COLLECT_RETRY_FIRST_SECONDS"],
            maximum=config["COLLECT_RETRY_MAX_SECONDS"],
        )
    today = utc_now().date()
    if state.retention_ran_on != today:
        flight_store.delete_expired(retention_days=current_app.config["RETENTION_DAYS"])
        state.retention_ran_on = today
    state.last_cycle_finished_at = utc_now()
    state.last_cycle_outcome = result.outcome
    state.last_cycle_mode = result.mode
    state.last_cycle_requests = result.requests
    state.last_cycle_credits = result.credits
    state.last_cycle_flights = result.flights
    db.session.commit()
    log.info(
        "collection cycle %s: %s mode, %d requests, %d credits, %d flights stored, "
        "%d ranges waiting for their retry, %d left for lack of credits",
        result.outcome,
        result.mode,
        result.requests,
        result.credits,
        result.flights,
        result.deferred,
        result.over_budget,
    )


class Cycle:
    """The work of one cycle, once the lock is held: plan, then fetch and store range by range.

    It starts from what is stored: the followed airports and their marks. What
    it did goes into ``result``.
    """

    def __init__(self, client: OpenSkyClient, config, result: CycleResult):
        self.client = client
        self.policy = policy_from_config(config)
        if flight_store.state().sweep_unreliable_since is not None:
            self.policy = replace(self.policy, sweep=False)
        self.result = result
        self.airports = flight_store.followed_airports()
        self.followers = flight_store.followers()
        self.credits_left = (
            config["OPENSKY_DAILY_CREDITS"] - flight_store.state().credits_spent_today()
        )
        self.marks = self._load_marks()
        self.retries = retries.Schedule(
            first=config["COLLECT_RETRY_FIRST_SECONDS"], maximum=config["COLLECT_RETRY_MAX_SECONDS"]
        )
        db.session.commit()

    def run(self) -> CycleResult:
        """Fetch and store everything the plan asks for; stop on a 429 or refused credentials."""
        plan = self._plan()
        dropped = self.retries.keep_only(_planned_ranges(plan))
        db.session.commit()
        if dropped:
            log.info("dropped %d retries of ranges no longer planned", dropped)
        try:
            self._fetch_airport_ranges(plan)
            if not self._sweep(plan.sweep_days):
                # The sweep proved unusable: ask per airport for everything still due.
                self.marks = self._load_marks()
                self._fetch_airport_ranges(self._plan())
        except RateLimitedError as error:
            self._wait(error)
        except CredentialsRefusedError as error:
            log.error("stopping the cycle: %s", error)
            self.result.outcome = "partial"
        return self.result

    def _load_marks(self) -> flight_store.Marks:
        first_day = int(time.time()) // planning.DAY - self.policy.backfill_days
        return flight_store.load_marks(self.airports, first_day=first_day)

    def _plan(self) -> planning.Plan:
        plan = planning.plan_cycle(
            self.marks, self.airports, now=int(time.time()), policy=self.policy
        )
        self.result.mode = plan.mode
        self.result.planned_requests = plan.request_count
        self.result.per_airport_cost = plan.per_airport_cost
        self.result.sweep_cost = plan.sweep_cost
        log.info(
            "cycle plan for %d airports: %s, %d requests, %d credits (per airport %d, sweep %s)",
            len(self.airports),
            plan.mode,
            plan.request_count,
            plan.cost,
            plan.per_airport_cost,
            plan.sweep_cost,
        )
        return plan

    def _fetch_airport_ranges(self, plan: planning.Plan) -> None:
        """Fetch and store every airport range, asking OpenSky for the next while one is stored.

        Storing a range (the upsert and its commit) takes about as long as
        fetching one (OpenSky's answer and its parsing), so the two overlap:
        one thread fetches, this one stores. The next range is asked for only
        once OpenSky has answered the current one, so after a 429 or refused
        credentials nothing more is sent.
        """
        # The most-followed airports first, each newest first: if the day's credits run
        # out, the most wanted data is in.
        wanted = [
            request
            for request in sorted(
                plan.airport_requests, key=lambda r: (-self.followers.get(r.airport, 0), -r.begin)
            )
            if not self._deferred(_airport_range(request))
        ]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="opensky-fetch") as fetcher:
            upcoming = iter(wanted)
            ahead = self._fetch_next(fetcher, upcoming)
            while ahead is not None:
                request, answer = ahead
                ahead = None
                with self._one_range(_describe(request), _airport_range(request)):
                    flights = self._answered(request.begin, request.end, answer)
                    ahead = self._fetch_next(fetcher, upcoming)
                    self._store_airport_range(request, flights, fetched_at=answer.asked_at)
                if ahead is None:  # the range failed: go on with the next
                    ahead = self._fetch_next(fetcher, upcoming)

    def _fetch_next(
        self, fetcher: ThreadPoolExecutor, upcoming: Iterator[planning.AirportRequest]
    ) -> tuple[planning.AirportRequest, "_Fetch"] | None:
        """Start fetching the next range of ``upcoming`` that today's credits cover.

        Return None when none is left.
        """
        request = next(upcoming, None)
        while request is not None and not self._affordable(request.cost, _describe(request)):
            request = next(upcoming, None)
        if request is None:
            return None
        future = fetcher.submit(
            self.client.flights,
            request.direction,
            begin=request.begin,
            end=request.end,
            airport=request.airport,
        )
        return request, _Fetch(future, asked_at=int(time.time()))

    def _answered(self, begin: int, end: int, fetch: "_Fetch") -> list[dict]:
        """Wait for a fetch; count it, record the credits left; return its flights or raise."""
        self.result.requests += 1
        answer = fetch.future.result()
        self._spent(planning.request_cost(begin, end, fetch.asked_at))
        return answer.flights

    def _affordable(self, cost: int, what: str) -> bool:
        """Set aside ``cost`` of today's credits, or tell (and log) that they do not cover it."""
        if cost <= self.credits_left:
            self.credits_left -= cost
            return True
        log.warning(
            "%s left for another day: it costs %d credits, %d of today's %d are left "
            "(OPENSKY_DAILY_CREDITS)",
            what,
            cost,
            max(self.credits_left, 0),
            current_app.config["OPENSKY_DAILY_CREDITS"],
        )
        self.result.over_budget += 1
        self.result.outcome = "partial"
        return False

    def _spent(self, cost: int) -> None:
        """Count an answered request's credits, committed at once (whatever its range's fate)."""
        self.result.credits += cost
        flight_store.spend_credits(cost)
        flight_store.record_credits(self.client.last_remaining)
        db.session.commit()

    def _store_airport_range(
        self, request: planning.AirportRequest, flights: list[dict], *, fetched_at: int
    ) -> None:
        """Store one airport range's flights and marks together, committed, or neither."""
        self.result.flights += flight_store.upsert_flights(flights)
        days = self.marks.setdefault((request.airport, request.direction), {})
        updated = {}
        for day in range(request.begin // planning.DAY, request.end // planning.DAY + 1):
            mark = planning.mark_after_fetch(
                days.get(day), day=day, begin=request.begin, end=request.end, fetched_at=fetched_at
            )
            if mark is not None:
                updated[day] = mark
        flight_store.store_marks(
            {(request.airport, request.direction, day): m for day, m in updated.items()}
        )
        self.retries.succeeded(_airport_range(request))
        db.session.commit()
        days.update(updated)

    def _deferred(self, wanted: retries.Range) -> bool:
        """Tell whether ``wanted`` waits for its retry (then it is not asked for now)."""
        retry = self.retries.waiting(wanted, time.time())
        if retry is None:
            return False
        log.info(
            "%s %s [%s, %s] waits for its retry at %s (failed %d times)",
            wanted.endpoint,
            wanted.airport,
            wanted.begin,
            wanted.end,
            planning.moment(int(retry.next_attempt_at)),
            retry.attempts,
        )
        self.result.deferred += 1
        self.result.outcome = "partial"
        return True

    def _sweep(self, sweep_days: list[planning.SweepDay]) -> bool:
        """Fetch whole past days through /flights/all; mark each once all its windows are in.

        Return False, having marked nothing of the day, when a day shows that
        /flights/all only returns flights contained in their window (see
        ``_contained_only``): such a sweep loses every longer flight.
        """
        swept_at: dict[int, int] = {}  # day -> when its first window was fetched
        in_window = planning.window_days(int(time.time()), self.policy.backfill_days)
        for sweep_day in sweep_days:
            windows = [
                retries.Range("all", retries.NO_AIRPORT, b, e) for b, e, _ in sweep_day.windows
            ]
            # A day is marked only once all its windows are in: while one of them waits
            # for its retry, asking for the others would spend credits for nothing.
            if any(self._deferred(window) for window in windows):
                continue
            day_cost = sum(cost for _begin, _end, cost in sweep_day.windows)
            if not self._affordable(day_cost, f"the sweep of {planning.day_date(sweep_day.day)}"):
                continue
            started = int(time.time())
            answers = [
                (end, self._collect_sweep_window(begin, end))
                for begin, end, _cost in sweep_day.windows
            ]
            if any(flights is None for _end, flights in answers):
                continue  # a window failed: the day waits for the next cycle
            if _contained_only(answers):
                self._distrust_sweep(sweep_day.day, sum(len(f) for _end, f in answers))
                return False
            swept_at[sweep_day.day] = started
            marks = planning.marks_after_sweep(
                sweep_day, swept_at=swept_at, airports=self.airports, window=in_window
            )
            flight_store.store_marks(marks)
            db.session.commit()
        return True

    def _collect_sweep_window(self, begin: int, end: int) -> list[dict] | None:
        """Fetch one window, store its flights at followed airports; return all it gave."""
        window = retries.Range("all", retries.NO_AIRPORT, begin, end)
        with self._one_range(f"all [{begin}, {end}]", window):
            flights = self._fetch("all", begin=begin, end=end, airport=None)
            followed = set(self.airports)
            self.result.flights += flight_store.upsert_flights(
                [
                    f
                    for f in flights
                    if f["est_departure_airport"] in followed
                    or f["est_arrival_airport"] in followed
                ]
            )
            self.retries.succeeded(window)
            db.session.commit()
            return flights
        return None

    def _fetch(self, endpoint: str, *, begin: int, end: int, airport: str | None) -> list[dict]:
        """One OpenSky request; return its flights, or raise the OpenSkyError that failed it."""
        self.result.requests += 1
        asked_at = int(time.time())
        answer = self.client.flights(endpoint, begin=begin, end=end, airport=airport)
        self._spent(planning.request_cost(begin, end, asked_at))
        return answer.flights

    @contextmanager
    def _one_range(self, what: str, wanted: retries.Range) -> Iterator[None]:
        """Fetch and store a range in one go; if that fails, lose only that range.

        OpenSky failing the request, a value the database refuses, or a bug
        rolls back this range, which stays unmarked and gets a retry on its
        own schedule; the cycle goes on with the others. Rate limits, refused
        credentials and a database that does not answer still stop the cycle.
        """
        try:
            yield
        except STOPS_THE_CYCLE:
            raise
        except OpenSkyError as error:
            log.error("skipping %s: %s", what, error)
            self._failed(wanted, str(error))
        except Exception as error:
            db.session.rollback()
            log.exception("skipping %s: its flights could not be stored", what)
            self._failed(wanted, f"its flights could not be stored: {type(error).__name__}")

    def _failed(self, wanted: retries.Range, error: str) -> None:
        """Record a failed range: its retry, and the credits OpenSky said are left."""
        db.session.rollback()
        self.result.outcome = "partial"
        retry = self.retries.failed(wanted, error=error, now=time.time())
        flight_store.record_credits(self.client.last_remaining)
        db.session.commit()
        log.warning(
            "%s %s [%s, %s] is asked for again at %s (failed %d times in a row)",
            wanted.endpoint,
            wanted.airport,
            wanted.begin,
            wanted.end,
            planning.moment(int(retry.next_attempt_at)),
            retry.attempts,
        )

    def _distrust_sweep(self, day: int, flights: int) -> None:
        """Remember, for every process and later cycle, that the sweep cannot be used."""
        log.warning(
            "OpenSky /flights/all returned %d flights for %s and none ends after its 2-hour "
            "window: it only returns flights contained in the window, so a sweep would lose "
            "every longer flight. The day is not marked; collecting per airport from now on "
            "(collector_state.sweep_unreliable_since; set it to NULL to try the sweep again).",
            flights,
            planning.day_date(day),
        )
        flight_store.state().sweep_unreliable_since = utc_now()
        db.session.commit()
        self.policy = replace(self.policy, sweep=False)

    def _wait(self, error: RateLimitedError) -> None:
        db.session.rollback()
        not_before = utc_now() + timedelta(seconds=error.retry_after)
        log.warning("OpenSky rate limit: no request before %s; stopping the cycle", not_before)
        if error.remaining is not None:
            self.client.last_remaining = error.remaining
        flight_store.record_credits(self.client.last_remaining)
        flight_store.state().not_before = not_before
        db.session.commit()
        self.result.outcome = "rate-limited"


@dataclass(frozen=True)
class _Fetch:
    """An OpenSky request under way in the fetcher thread, and when it was sent."""

    future: Future
    asked_at: int


def _airport_range(request: planning.AirportRequest) -> retries.Range:
    return retries.Range(request.direction, request.airport, request.begin, request.end)


def _describe(request: planning.AirportRequest) -> str:
    return f"{request.direction} {request.airport} [{request.begin}, {request.end}]"


def _planned_ranges(plan: planning.Plan) -> list[retries.Range]:
    """Return every range the plan asks for, as retries name them."""
    ranges = [_airport_range(r) for r in plan.airport_requests]
    ranges += [
        retries.Range("all", retries.NO_AIRPORT, begin, end)
        for day in plan.sweep_days
        for begin, end, _cost in day.windows
    ]
    return ranges


def _contained_only(answers: list[tuple[int, list[dict]]]) -> bool:
    """Tell whether a swept day's windows gave flights, none ending after its window.

    ``answers`` holds each window's end and flights. With OpenSky's documented
    behaviour (flights first seen in the window) a day's sweep always has
    flights still in the air when their window ends; if none does, the
    endpoint only returns flights contained in the window.
    """
    given = [flight for _end, flights in answers for flight in flights]
    return bool(given) and not any(
        flight["last_seen"] > planning.moment(end) for end, flights in answers for flight in flights
    )

"""One collection cycle, read as its phases: start, plan, fetch, store, mark, finish.

A cycle runs under the collection lock (:mod:`data_collector.collection.lock`):
one at a time across processes and replicas. Every replica's worker runs the
periodic cycle on its own schedule, so a periodic cycle is skipped when
another periodic one started within the period
(``last_periodic_cycle_started_at``). Requested cycles (a new interest, a
due retry) always run, and do not postpone the periodic one: one an hour
after a periodic cycle would otherwise push the next to a day later.

The phases, each with its one commit point:

- **start** (:meth:`Cycle.start`): under the lock, read the shared state
  fresh; skip the cycle while OpenSky asked us to wait or when it is a
  periodic one whose period another replica already covered; claim the
  requests this cycle answers and record it as running. Commit, so a cycle
  that fails later still consumes them.
- **plan** (:meth:`Cycle.plan`): read the followed airports, their marks in
  ``collected_days``, today's credits and the retries; plan
  (:mod:`~data_collector.collection.planning`, pure); drop the retries of
  ranges no longer planned. Commit.
- then range by range, the most-followed airports first:
  **fetch** (:meth:`Cycle.fetch`) asks OpenSky (nothing is written: the
  range's credits are counted in memory), **store** upserts its flights,
  **mark** (:meth:`Cycle.mark`) writes its credits, its day marks, the
  end of its retry and, for each followed airport whose figure over its
  alert window this changed, the event that tells the Alert System
  (:mod:`data_collector.alerts`). Commit: a range's flights, marks and
  events go in together or not at all, so a crash loses nothing already
  stored, leaves no range marked that was not stored, and no event is
  sent about data that was not. Sweep windows store their flights as they
  arrive; a swept day's marks are written once the whole day is in. A range
  that fails (OpenSky still failing after the client's attempts, or flights
  the database refuses) is marked failed instead (:meth:`Cycle.mark_failed`:
  its credits and its retry, :mod:`~data_collector.collection.retries`),
  also one commit, and the cycle goes on with the next range.
- **finish** (:meth:`Cycle.finish`): consume the claimed requests; after a
  429, store "not before" for every process; remember a sweep found
  unusable; record the airports whose requests today's credits did not
  cover (their followers are told; :func:`collection_pending` runs a cycle
  for them once credits come); give retries the cycle left untried their
  next wait; apply retention once a day; record the outcome. Commit.

Inside the cycle times are Unix seconds and days UTC day numbers;
:mod:`~data_collector.collection.store`, :mod:`~data_collector.collection.retries`
and the logs convert at their edge.
"""

import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

import psycopg2
from flask import current_app
from sqlalchemy.exc import OperationalError

from common.timeutil import DAY, day_date, moment
from data_collector import alerts
from data_collector.collection import cycle_requests, planning, retries, store
from data_collector.collection.lock import cycle_lock
from data_collector.collection.opensky import (
    CircuitOpenError,
    CredentialsRefusedError,
    OpenSkyClient,
    OpenSkyError,
    RateLimitedError,
)
from data_collector.collection.planning import AirportRequest, Range
from data_collector.models import db

log = logging.getLogger(__name__)

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

    outcome: str  # done, partial, failed, rate-limited, circuit-open, busy, waiting, skipped
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
        breaker_failures=config["OPENSKY_BREAKER_FAILURES"],
        breaker_cooldown=config["OPENSKY_BREAKER_COOLDOWN_SECONDS"],
    )


def collection_pending() -> bool:
    """Tell whether a cycle is wanted now, and OpenSky may be asked.

    Wanted: one was asked for (a new interest), a failed range's retry is
    due, or credits came since a cycle left requests for lack of them (a new
    UTC day, or a worker restarted with a higher ``OPENSKY_DAILY_CREDITS``).
    Nothing else: what today's credits do not cover is not asked for again
    and again.
    """
    now = time.time()
    state = store.read_state()
    if _waiting_for_opensky(state, now) or _breaker_open(state, now):
        return False
    return _credits_came(state, now) or cycle_requests.pending(or_else=retries.due(now))


def run_cycle(*, client: OpenSkyClient, periodic: bool = False) -> CycleResult:
    """Run one cycle if no other process is running one and OpenSky is not to be waited for.

    ``periodic``: the scheduled cycle, skipped if any replica started one
    within the current period.
    """
    with cycle_lock() as acquired:
        if not acquired:
            log.info("another process is collecting; skipping this cycle")
            return CycleResult("busy")
        cycle = Cycle(client, current_app.config)
        if not cycle.start(periodic=periodic):
            return cycle.result
        try:
            cycle.run()
        except Exception:
            log.exception("collection cycle failed")
            cycle.result.outcome = "failed"
        finally:
            db.session.rollback()
            cycle.finish()
        return cycle.result


def _waiting_for_opensky(state: store.State, now: float) -> bool:
    return state.not_before is not None and state.not_before > now


def _breaker_open(state: store.State, now: float) -> bool:
    """Tell whether the circuit breaker forbids every call now (its cool-down is not over)."""
    until = state.breaker.open_until(current_app.config["OPENSKY_BREAKER_COOLDOWN_SECONDS"])
    return until is not None and until.timestamp() > now


def _credits_came(state: store.State, now: float) -> bool:
    """Tell whether credits came since the last cycle left requests for lack of them."""
    if state.over_budget_day is None:
        return False
    if state.over_budget_day < now // DAY:
        return True
    budget = current_app.config["OPENSKY_DAILY_CREDITS"]
    return state.over_budget_credits is not None and budget > state.over_budget_credits


class Cycle:
    """One cycle, once the lock is held: its phases, and what it did so far (``result``)."""

    def __init__(self, client: OpenSkyClient, config):
        self.client = client
        self.config = config
        self.result = CycleResult("done")
        self.started_at = time.time()
        self.taken: list[int] = []
        # Answered requests' credits not yet committed: written with their range's
        # mark, its failure, or at the finish, whichever comes first.
        self.unrecorded_credits = 0
        # After a 429: no OpenSky request before this, from any process.
        self.opensky_wait_until: float | None = None
        self.sweep_unreliable_at: float | None = None
        # Airports with requests left for lack of today's credits.
        self.waiting_for_credits: set[str] = set()
        # Airports whose flights the open transaction stored: their figure may have changed.
        self.touched: set[str] = set()

    # --- start ---------------------------------------------------------------------------

    def start(self, *, periodic: bool) -> bool:
        """Claim the requests this cycle answers and record it running; False: it does not run."""
        # What this session read before the lock may be stale: another replica may
        # have just stored a 429's "not before" or finished a cycle.
        db.session.expire_all()
        state = store.read_state()
        if _waiting_for_opensky(state, self.started_at):
            log.info(
                "OpenSky asked us to wait until %s; skipping this cycle", moment(state.not_before)
            )
            db.session.rollback()
            self.result.outcome = "waiting"
            return False
        if _breaker_open(state, self.started_at):
            log.info(
                "the OpenSky circuit breaker is open until %s; skipping this cycle",
                state.breaker.open_until(self.config["OPENSKY_BREAKER_COOLDOWN_SECONDS"]),
            )
            db.session.rollback()
            self.result.outcome = "waiting"
            return False
        # Where the last cycle (of any process) left it: after the cool-down, a trial call.
        self.client.resume_breaker(state.breaker)
        if periodic and self._started_this_period(state):
            log.info(
                "a periodic cycle started at %s, within this period; skipping this one",
                moment(state.last_periodic_cycle_started_at),
            )
            db.session.rollback()
            self.result.outcome = "skipped"
            return False
        self.taken = cycle_requests.claim()
        store.record_start(now=self.started_at, periodic=periodic)
        db.session.commit()
        return True

    def _started_this_period(self, state: store.State) -> bool:
        """Tell whether a periodic cycle started within the period (and no cycle died running)."""
        started = state.last_periodic_cycle_started_at
        if started is None or state.last_cycle_outcome == "running":
            return False
        period = self.config["COLLECT_INTERVAL_MINUTES"] * 60 * PERIOD_SHARE
        return self.started_at - started < period

    def run(self) -> None:
        """Plan, then fetch, store and mark each planned range; stop on a 429 or bad credentials."""
        plan = self.plan()
        try:
            self.collect_airports(plan)
            if not self.sweep(plan.sweep_days):
                # The sweep proved unusable: ask per airport for everything still due.
                self.collect_airports(self.replan())
        except RateLimitedError as error:
            self.wait(error)
        except CredentialsRefusedError as error:
            log.error("stopping the cycle: %s", error)
            self.result.outcome = "partial"
        except CircuitOpenError as error:
            # What is left stays due: the next cycle after the cool-down plans it again.
            log.warning("stopping the cycle: %s", error)
            self.result.outcome = "circuit-open"

    # --- plan ----------------------------------------------------------------------------

    def plan(self) -> planning.Plan:
        """Read what is stored, plan from it, drop the retries no longer planned."""
        state = store.read_state()
        self.policy = policy_from_config(self.config)
        if state.sweep_unreliable:
            self.policy = replace(self.policy, sweep=False)
        self.airports = store.followed_airports()
        self.followers = store.followers()
        self.credits_left = self.config["OPENSKY_DAILY_CREDITS"] - state.credits_spent_today
        self.retries = retries.Schedule(
            first=self.config["COLLECT_RETRY_FIRST_SECONDS"],
            maximum=self.config["COLLECT_RETRY_MAX_SECONDS"],
        )
        plan = self.replan()
        dropped = self.retries.keep_only(plan.ranges)
        db.session.commit()
        if dropped:
            log.info("dropped %d retries of ranges no longer planned", dropped)
        return plan

    def replan(self) -> planning.Plan:
        """Plan from the marks as they are stored now."""
        now = int(time.time())
        first_day = now // DAY - self.policy.backfill_days
        self.marks = store.load_marks(self.airports, first_day=first_day)
        plan = planning.plan_cycle(self.marks, self.airports, now=now, policy=self.policy)
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

    def _affordable(self, cost: int, what: str, airports: Iterable[str]) -> bool:
        """Set aside ``cost`` of today's credits, or tell (and log) that they do not cover it.

        ``airports``: whose collection waits for the next day's credits if not.
        """
        if cost <= self.credits_left:
            self.credits_left -= cost
            return True
        self.waiting_for_credits.update(airports)
        log.warning(
            "%s left for another day: it costs %d credits, %d of today's %d are left "
            "(OPENSKY_DAILY_CREDITS)",
            what,
            cost,
            max(self.credits_left, 0),
            self.config["OPENSKY_DAILY_CREDITS"],
        )
        self.result.over_budget += 1
        self.result.outcome = "partial"
        return False

    def _deferred(self, wanted: Range) -> bool:
        """Tell whether ``wanted`` waits for its retry (then it is not asked for now)."""
        retry = self.retries.waiting(wanted, time.time())
        if retry is None:
            return False
        log.info(
            "%s waits for its retry at %s (failed %d times)",
            wanted,
            moment(int(retry.next_attempt_at)),
            retry.attempts,
        )
        self.result.deferred += 1
        self.result.outcome = "partial"
        return True

    # --- per airport: fetch, store, mark -------------------------------------------------

    def collect_airports(self, plan: planning.Plan) -> None:
        """Fetch, store and mark every airport range, fetching the next while one is stored.

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
            if not self._deferred(request.range)
        ]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="opensky-fetch") as fetcher:
            upcoming = iter(wanted)
            ahead = self._fetch_next(fetcher, upcoming)
            while ahead is not None:
                request, pending = ahead
                ahead = None
                with self._one_range(request.range):
                    flights = self._answered(request, pending)
                    ahead = self._fetch_next(fetcher, upcoming)
                    self._store(flights)
                    self._mark_request(request, fetched_at=pending.asked_at)
                if ahead is None:  # the range failed: go on with the next
                    ahead = self._fetch_next(fetcher, upcoming)

    def _fetch_next(
        self, fetcher: ThreadPoolExecutor, upcoming: Iterator[AirportRequest]
    ) -> tuple[AirportRequest, "_Fetch"] | None:
        """Start fetching the next range of ``upcoming`` that today's credits cover.

        Return None when none is left.
        """
        request = next(upcoming, None)
        while request is not None and not self._affordable(
            request.cost, str(request.range), [request.airport]
        ):
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

    def _answered(self, request: AirportRequest, pending: "_Fetch") -> list[dict]:
        """Wait for a fetch; count it and its credits; return its flights or raise."""
        self.result.requests += 1
        answer = pending.future.result()
        self._spent(planning.request_cost(request.begin, request.end, pending.asked_at))
        return answer.flights

    def _mark_request(self, request: AirportRequest, *, fetched_at: int) -> None:
        days = self.marks.setdefault((request.airport, request.direction), {})
        updated = planning.marks_after_request(request, days, fetched_at=fetched_at)
        self.mark(
            request.range,
            {(request.airport, request.direction, day): m for day, m in updated.items()},
        )
        days.update(updated)

    # --- the sweep: fetch, store, mark ---------------------------------------------------

    def sweep(self, sweep_days: list[planning.SweepDay]) -> bool:
        """Fetch whole past days through /flights/all; mark each once all its windows are in.

        Return False, having marked nothing of the day, when a day shows that
        /flights/all only returns flights contained in their window (see
        ``_contained_only``): such a sweep loses every longer flight.
        """
        swept_at: dict[int, int] = {}  # day -> when its first window was fetched
        in_window = planning.window_days(int(time.time()), self.policy.backfill_days)
        for sweep_day in sweep_days:
            windows = sweep_day.ranges
            # A day is marked only once all its windows are in: while one of them waits
            # for its retry, asking for the others would spend credits for nothing.
            if any(self._deferred(window) for window in windows):
                continue
            if not self._affordable(
                sweep_day.cost, f"the sweep of {day_date(sweep_day.day)}", self.airports
            ):
                continue
            started = int(time.time())
            answers = [(window.end, self._sweep_window(window)) for window in windows]
            if any(flights is None for _end, flights in answers):
                continue  # a window failed: the day waits for the next cycle
            if _contained_only(answers):
                self._distrust_sweep(sweep_day.day, sum(len(f) for _end, f in answers))
                return False
            swept_at[sweep_day.day] = started
            self.mark(
                None,
                planning.marks_after_sweep(
                    sweep_day, swept_at=swept_at, airports=self.airports, window=in_window
                ),
            )
        return True

    def _sweep_window(self, window: Range) -> list[dict] | None:
        """Fetch one window, store its flights at followed airports; return all it gave."""
        with self._one_range(window):
            flights = self.fetch(window)
            followed = set(self.airports)
            self._store(
                [
                    f
                    for f in flights
                    if f["est_departure_airport"] in followed
                    or f["est_arrival_airport"] in followed
                ]
            )
            self.mark(window, {})
            return flights
        return None

    def _distrust_sweep(self, day: int, flights: int) -> None:
        """Stop sweeping: in this cycle at once, in every later one from the finish on."""
        log.warning(
            "OpenSky /flights/all returned %d flights for %s and none ends after its 2-hour "
            "window: it only returns flights contained in the window, so a sweep would lose "
            "every longer flight. The day is not marked; collecting per airport from now on "
            "(collector_state.sweep_unreliable_since; set it to NULL to try the sweep again).",
            flights,
            day_date(day),
        )
        self.sweep_unreliable_at = time.time()
        self.policy = replace(self.policy, sweep=False)

    # --- fetch ---------------------------------------------------------------------------

    def fetch(self, wanted: Range) -> list[dict]:
        """Ask OpenSky for one range; return its flights, or raise the OpenSkyError that failed."""
        self.result.requests += 1
        asked_at = int(time.time())
        answer = self.client.flights(
            wanted.endpoint, begin=wanted.begin, end=wanted.end, airport=wanted.airport or None
        )
        self._spent(planning.request_cost(wanted.begin, wanted.end, asked_at))
        return answer.flights

    def _spent(self, cost: int) -> None:
        """Count an answered request's credits (committed with what becomes of its range)."""
        self.result.credits += cost
        self.unrecorded_credits += cost

    def wait(self, error: RateLimitedError) -> None:
        """Stop the cycle after a 429; the finish makes every process wait as OpenSky said."""
        db.session.rollback()
        self.opensky_wait_until = time.time() + error.retry_after
        log.warning(
            "OpenSky rate limit: no request before %s; stopping the cycle",
            moment(self.opensky_wait_until),
        )
        if error.remaining is not None:
            self.client.last_remaining = error.remaining
        self.result.outcome = "rate-limited"

    # --- store -------------------------------------------------------------------------

    def _store(self, flights: list[dict]) -> None:
        """Upsert ``flights`` in the open transaction; remember the followed airports they touch."""
        self.result.flights += store.upsert_flights(flights)
        followed = set(self.airports)
        for flight in flights:
            for airport in (flight["est_departure_airport"], flight["est_arrival_airport"]):
                if airport in followed:
                    self.touched.add(airport)

    # --- mark ----------------------------------------------------------------------------

    def mark(self, fetched: Range | None, marks: dict[tuple[str, str, int], planning.Mark]) -> None:
        """Commit what was stored of a range: credits, ``marks``, its retry's end, alert events.

        ``fetched`` is the range whose flights this transaction stored (None
        for a swept day's marks, whose windows were committed one by one).
        The airports whose flights or marks this transaction wrote get an
        event when their figure over their alert window changed, committed
        with what changed it.
        """
        store.spend_credits(self.unrecorded_credits)
        store.record_breaker(self.client.breaker_snapshot())
        store.store_marks(marks)
        if fetched is not None:
            self.retries.succeeded(fetched)
        followed = set(self.airports)
        self.touched.update(airport for airport, _direction, _day in marks if airport in followed)
        alerts.publish_changed_figures(
            self.touched, refresh_days=self.config["COLLECT_REFRESH_DAYS"]
        )
        db.session.commit()
        self.unrecorded_credits = 0
        self.touched.clear()

    def mark_failed(self, failed: Range, error: str) -> None:
        """Commit a range's failure instead: its credits, if answered, and its retry."""
        db.session.rollback()
        self.touched.clear()
        self.result.outcome = "partial"
        store.spend_credits(self.unrecorded_credits)
        store.record_breaker(self.client.breaker_snapshot())
        retry = self.retries.failed(failed, error=error, now=time.time())
        db.session.commit()
        self.unrecorded_credits = 0
        log.warning(
            "%s is asked for again at %s (failed %d times in a row)",
            failed,
            moment(int(retry.next_attempt_at)),
            retry.attempts,
        )

    @contextmanager
    def _one_range(self, wanted: Range) -> Iterator[None]:
        """Fetch, store and mark a range in one go; if that fails, lose only that range.

        OpenSky failing the request, a value the database refuses, or a bug
        rolls back this range, which stays unmarked and gets a retry on its
        own schedule; the cycle goes on with the others. Rate limits, refused
        credentials and a database that does not answer still stop the cycle.
        """
        try:
            yield
        except STOPS_THE_CYCLE:
            raise
        except CircuitOpenError as error:
            # The range failed (it is what opened the breaker): its retry, then stop.
            self.mark_failed(wanted, str(error))
            raise
        except OpenSkyError as error:
            log.error("skipping %s: %s", wanted, error)
            self.mark_failed(wanted, str(error))
        except Exception as error:
            db.session.rollback()
            log.exception("skipping %s: its flights could not be stored", wanted)
            self.mark_failed(wanted, f"its flights could not be stored: {type(error).__name__}")

    # --- finish --------------------------------------------------------------------------

    def finish(self) -> None:
        """Consume the claimed requests; record what the cycle did and what every process must know.

        Whatever happened, the cycle ends here. A failure that repeats would otherwise be
        retried every ``COLLECT_POLL_SECONDS``, spending credits.
        """
        now, result, config = time.time(), self.result, self.config
        cycle_requests.consume(self.taken)
        store.spend_credits(self.unrecorded_credits)
        store.record_breaker(self.client.breaker_snapshot())
        if result.requests or self.opensky_wait_until is not None:
            store.record_credits(self.client.last_remaining)
        if self.opensky_wait_until is not None:
            store.wait_for_opensky(until=self.opensky_wait_until)
        if self.sweep_unreliable_at is not None:
            store.distrust_sweep(since=self.sweep_unreliable_at)
        # What waits for credits is collected when they come (collection_pending).
        store.record_credit_waits(
            airports=sorted(self.waiting_for_credits), budget=config["OPENSKY_DAILY_CREDITS"]
        )
        # Resume as soon as the wait is over (collection_pending holds the cycle back till then),
        # and leave the retries due to it, not a step further along their schedule.
        waits = result.outcome in ("rate-limited", "circuit-open")
        if waits:
            cycle_requests.request_collection()
        else:
            retries.postpone_overdue(
                due_by=self.started_at,
                now=now,
                first=config["COLLECT_RETRY_FIRST_SECONDS"],
                maximum=config["COLLECT_RETRY_MAX_SECONDS"],
            )
        store.apply_retention(retention_days=config["RETENTION_DAYS"])
        store.record_outcome(
            now=now,
            outcome=result.outcome,
            mode=result.mode,
            requests=result.requests,
            credits=result.credits,
            flights=result.flights,
        )
        db.session.commit()
        self.unrecorded_credits = 0
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


@dataclass(frozen=True)
class _Fetch:
    """An OpenSky request under way in the fetcher thread, and when it was sent."""

    future: Future
    asked_at: int


def _contained_only(answers: list[tuple[int, list[dict]]]) -> bool:
    """Tell whether a swept day's windows gave flights, none ending after its window.

    ``answers`` holds each window's end and flights. With OpenSky's documented
    behaviour (flights first seen in the window) a day's sweep always has
    flights still in the air when their window ends; if none does, the
    endpoint only returns flights contained in the window.
    """
    given = [flight for _end, flights in answers for flight in flights]
    return bool(given) and not any(
        flight["last_seen"] > moment(end) for end, flights in answers for flight in flights
    )

"""What one collection cycle asks OpenSky for, and what it costs: pure functions, no I/O.

Time is Unix seconds and days are UTC day numbers (``seconds // DAY``), as
OpenSky counts its partitions. For every followed airport and direction the
collector keeps one mark per day (table ``collected_days``): ``fetched_until``,
the last second of that day fetched so far (every second from the day's start
up to it was fetched), and ``fetched_at``, when the oldest of those fetches
happened. From the marks this module derives what is due:

- a day of the backfill window with no mark: the whole day (up to now);
- a day fetched only up to some second: the rest of it (today: only once at
  least ``min_gap`` is new, since a request costs the same for a minute as for
  a day);
- a whole day fetched before it was ``refresh_days`` old: the whole day again,
  once it is that old (OpenSky's nightly batch fills arrivals late, and a
  departure shows up only after the flight landed); after that fetch the day
  is settled and never asked for again.

A request that would start less than ``RECENT_REACH`` ago starts that long
ago instead (never before the window, nor inside what an earlier request of
the same plan covers): OpenSky prices every interval that starts within the
last 24 hours alike, and lists a flight only once it has landed, also as a
departure. Asking only from the previous fetch's end would miss, until the
day's refresh, every departure that took off before that end and landed
after it; reaching back lists it at the next fetch, for the same 4 credits.
The overlap is stored again harmlessly (flights are upserted), and the marks
keep their meaning: every second of the day up to ``fetched_until`` was
asked for, the oldest of those fetches at ``fetched_at``.

Requests are cut on UTC day boundaries and priced by OpenSky's documented
rules (OpenSky's REST documentation): 4 credits when the interval starts less than
24 hours ago, else 30 for one or two day partitions, so one request covering
two whole days costs the same as one covering one. Two ways to get past days
are priced for the airports followed, and the cheaper is used:

- per airport: each direction's due days in requests of one or two days;
- global sweep: every past due day through ``/flights/all`` in twelve 2-hour
  windows, filtered locally. A sweep of day d gives every flight *first seen*
  on d, so d's departures; d's arrivals also need the flights first seen on
  d-1 (a flight may land the day after it took off), so each run of swept
  days is preceded by a "lead-in" day swept for that purpose. Today is never
  swept: its flights are still landing, and per-airport requests for it cost
  4 credits.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from common.timeutil import DAY, day_end, day_start

DIRECTIONS = ("arrival", "departure")
# OpenSky's limits on one request's interval.
MAX_AIRPORT_INTERVAL = 2 * DAY
SWEEP_WINDOW = 2 * 3600
SWEEP_WINDOWS_PER_DAY = DAY // SWEEP_WINDOW
# The airport of a /flights/all window (a retry's key column, so never NULL).
NO_AIRPORT = ""

# Credits per flights request, as OpenSky documents them.
RECENT_COST = 4
PAST_COST = 30
PER_PARTITION_COST = 60
# How far back a request of the recent past starts (see the module docstring): two hours
# short of the 24 that keep it at RECENT_COST, so a request planned when a long cycle
# starts still starts within 24 hours when it is sent.
RECENT_REACH = DAY - 2 * 3600


def request_cost(begin: int, end: int, now: int) -> int:
    """Credits OpenSky charges for a flights request over ``[begin, end]`` asked at ``now``."""
    if begin >= now - DAY:
        return RECENT_COST
    partitions = end // DAY - begin // DAY + 1
    if partitions <= 2:
        return PAST_COST
    return PER_PARTITION_COST * partitions


@dataclass(frozen=True)
class Range:
    """What one request asks OpenSky for: an endpoint, an airport, seconds [begin, end].

    Retries are kept per range (:mod:`data_collector.collection.retries`).
    """

    endpoint: str
    airport: str
    begin: int
    end: int

    def overlaps(self, other: "Range") -> bool:
        """Tell whether both ask the same endpoint for the same airport over common seconds."""
        return (
            self.endpoint == other.endpoint
            and self.airport == other.airport
            and self.begin <= other.end
            and other.begin <= self.end
        )

    def __str__(self) -> str:
        where = f"{self.endpoint} {self.airport}" if self.airport else self.endpoint
        return f"{where} [{self.begin}, {self.end}]"


@dataclass(frozen=True)
class Mark:
    """What is stored about one airport, direction and day."""

    fetched_until: int
    fetched_at: int


@dataclass(frozen=True)
class Policy:
    """The tunables of planning (from the Data Collector's configuration)."""

    backfill_days: int
    refresh_days: int
    min_gap_seconds: int
    sweep: bool


@dataclass(frozen=True)
class Need:
    """A day of one airport and direction that must be fetched from ``begin`` on."""

    day: int
    begin: int


@dataclass(frozen=True)
class AirportRequest:
    """One ``/flights/arrival`` or ``/flights/departure`` request."""

    airport: str
    direction: str
    begin: int
    end: int
    cost: int

    @property
    def range(self) -> Range:
        """The range this request asks for."""
        return Range(self.direction, self.airport, self.begin, self.end)


@dataclass(frozen=True)
class SweepDay:
    """One past day fetched through ``/flights/all`` in 2-hour windows."""

    day: int
    windows: tuple[tuple[int, int, int], ...]  # (begin, end, cost)
    # Swept only so the next day's arrivals are complete: write no marks for it.
    lead_in: bool = False

    @property
    def cost(self) -> int:
        """Credits of every window of the day."""
        return sum(cost for _, _, cost in self.windows)

    @property
    def ranges(self) -> list[Range]:
        """The ranges of the day's windows."""
        return [Range("all", NO_AIRPORT, begin, end) for begin, end, _ in self.windows]


@dataclass
class Plan:
    """Every request of one cycle, and the cost of the option that was not taken."""

    airport_requests: list[AirportRequest] = field(default_factory=list)
    sweep_days: list[SweepDay] = field(default_factory=list)
    per_airport_cost: int = 0
    sweep_cost: int | None = None

    @property
    def mode(self) -> str:
        """``sweep`` when past days go through /flights/all, else ``per-airport``."""
        return "sweep" if self.sweep_days else "per-airport"

    @property
    def cost(self) -> int:
        """Credits the cycle will spend if every request succeeds once."""
        return sum(r.cost for r in self.airport_requests) + sum(d.cost for d in self.sweep_days)

    @property
    def request_count(self) -> int:
        """Flights requests the cycle will send if every request succeeds once."""
        return len(self.airport_requests) + sum(len(d.windows) for d in self.sweep_days)

    @property
    def ranges(self) -> list[Range]:
        """Every range the plan asks for."""
        return [r.range for r in self.airport_requests] + [
            window for day in self.sweep_days for window in day.ranges
        ]


def window_days(now: int, backfill_days: int) -> range:
    """Return the days collection keeps: the last ``backfill_days`` whole days and today."""
    today = now // DAY
    return range(today - backfill_days, today + 1)


def needs(marks: Mapping[int, Mark], *, now: int, policy: Policy) -> list[Need]:
    """Return the days of one airport and direction that are due, oldest first."""
    result = []
    for day in window_days(now, policy.backfill_days):
        end = min(day_end(day), now)
        mark = marks.get(day)
        if mark is None:
            result.append(Need(day, day_start(day)))
        elif mark.fetched_until < day_end(day):
            new_seconds = end - mark.fetched_until
            if new_seconds > 0 and (now > day_end(day) or new_seconds >= policy.min_gap_seconds):
                result.append(Need(day, mark.fetched_until + 1))
        else:
            settles_at = day_end(day) + policy.refresh_days * DAY
            if mark.fetched_at < settles_at <= now:
                result.append(Need(day, day_start(day)))
    return result


def group_requests(
    airport: str, direction: str, due: list[Need], *, now: int, earliest: int
) -> list[AirportRequest]:
    """Cover the due days with the cheapest requests of one or two consecutive days.

    Each request of the recent past reaches back (:func:`reach_back`), never
    before ``earliest``, the window's first second.
    """

    def request(first: Need, last_day: int) -> AirportRequest:
        end = min(day_end(last_day), now)
        cost = request_cost(first.begin, end, now)
        return AirportRequest(airport, direction, first.begin, end, cost)

    # best[i]: the cheapest requests covering due[i:].
    best: list[list[AirportRequest]] = [[] for _ in range(len(due) + 1)]
    best_cost = [0] * (len(due) + 1)
    for i in range(len(due) - 1, -1, -1):
        single = request(due[i], due[i].day)
        best[i], best_cost[i] = [single, *best[i + 1]], single.cost + best_cost[i + 1]
        if i + 1 < len(due) and due[i + 1].day == due[i].day + 1:
            pair = request(due[i], due[i + 1].day)
            if pair.cost + best_cost[i + 2] < best_cost[i]:
                best[i], best_cost[i] = [pair, *best[i + 2]], pair.cost + best_cost[i + 2]
    return reach_back(best[0], now=now, earliest=earliest)


def reach_back(requests: list[AirportRequest], *, now: int, earliest: int) -> list[AirportRequest]:
    """Start each request of the recent past ``RECENT_REACH`` ago, at no extra cost.

    ``requests`` are one airport and direction's, oldest first; none starts
    before ``earliest`` or inside the one before it.
    """
    reached, covered_until = [], earliest - 1
    for request in requests:
        begin = min(request.begin, max(now - RECENT_REACH, covered_until + 1))
        reached.append(replace(request, begin=begin))
        covered_until = request.end
    return reached


def sweep_windows(day: int, now: int) -> tuple[tuple[int, int, int], ...]:
    """Return the twelve 2-hour ``/flights/all`` windows of a past day, with their cost."""
    windows = []
    for begin in range(day_start(day), day_start(day + 1), SWEEP_WINDOW):
        end = begin + SWEEP_WINDOW - 1
        windows.append((begin, end, request_cost(begin, end, now)))
    return tuple(windows)


def sweep_days(past_due: Iterable[int], arrival_due: set[int], now: int) -> list[SweepDay]:
    """Sweep every past due day, plus the lead-in day before each run that needs arrivals."""
    days = set(past_due)
    lead_ins = {day - 1 for day in days if day in arrival_due and day - 1 not in days}
    return [
        SweepDay(day, sweep_windows(day, now), lead_in=day in lead_ins)
        for day in sorted(days | lead_ins)
    ]


def plan_cycle(
    marks: Mapping[tuple[str, str], Mapping[int, Mark]],
    airports: Iterable[str],
    *,
    now: int,
    policy: Policy,
) -> Plan:
    """Plan one cycle for the followed ``airports`` given the stored marks.

    ``marks[(airport, direction)][day]`` is the stored mark. The per-airport
    plan and (when allowed) the sweep plan are both priced; the cheaper wins,
    the per-airport one on a tie.
    """
    today = now // DAY
    earliest = day_start(window_days(now, policy.backfill_days).start)
    due = {
        (airport, direction): needs(marks.get((airport, direction), {}), now=now, policy=policy)
        for airport in sorted(set(airports))
        for direction in DIRECTIONS
    }

    per_airport = [
        request
        for (airport, direction), days in due.items()
        for request in group_requests(airport, direction, days, now=now, earliest=earliest)
    ]
    plan = Plan(airport_requests=per_airport, per_airport_cost=sum(r.cost for r in per_airport))

    past_due = {need.day for days in due.values() for need in days if need.day < today}
    if not policy.sweep or not past_due:
        return plan
    arrival_due = {
        need.day for (_, direction), days in due.items() if direction == "arrival" for need in days
    }
    swept = sweep_days(past_due, arrival_due, now)
    todays = [
        request
        for (airport, direction), days in due.items()
        for request in group_requests(
            airport, direction, [n for n in days if n.day == today], now=now, earliest=earliest
        )
    ]
    plan.sweep_cost = sum(r.cost for r in todays) + sum(d.cost for d in swept)
    if plan.sweep_cost < plan.per_airport_cost:
        plan.airport_requests, plan.sweep_days = todays, swept
    return plan


def mark_after_fetch(
    existing: Mark | None, *, day: int, begin: int, end: int, fetched_at: int
) -> Mark | None:
    """Return the mark of ``day`` once ``[begin, end]`` was fetched at ``fetched_at``.

    A fetch from the day's start replaces the mark. A fetch of the rest of a
    day extends it but keeps the older ``fetched_at``, because the day's first
    part is only as fresh as the fetch that got it. ``None`` when the fetch
    does not touch the day or would leave a gap.
    """
    first, last = max(begin, day_start(day)), min(end, day_end(day))
    if first > last:
        return None
    if first == day_start(day):
        return Mark(fetched_until=last, fetched_at=fetched_at)
    if existing is None or existing.fetched_until + 1 < first:
        return None
    return Mark(fetched_until=max(last, existing.fetched_until), fetched_at=existing.fetched_at)


def marks_after_request(
    request: AirportRequest, days: Mapping[int, Mark], *, fetched_at: int
) -> dict[int, Mark]:
    """Return the new marks of the days ``request`` touched, once fetched at ``fetched_at``.

    ``days`` holds the stored marks of the request's airport and direction.
    """
    marks = {}
    for day in range(request.begin // DAY, request.end // DAY + 1):
        mark = mark_after_fetch(
            days.get(day), day=day, begin=request.begin, end=request.end, fetched_at=fetched_at
        )
        if mark is not None:
            marks[day] = mark
    return marks


def marks_after_sweep(
    sweep_day: SweepDay, *, swept_at: Mapping[int, int], airports: Iterable[str], window: range
) -> dict[tuple[str, str, int], Mark]:
    """Return the marks a completed sweep day earns for every followed airport.

    ``swept_at`` maps each day swept so far in this cycle (this one included,
    days in ascending order) to when its first window was fetched. The day's
    departures are complete; its arrivals too when the day before was swept
    as well. A lead-in day earns nothing: it was only fetched for its successor.
    """
    day, marks = sweep_day.day, {}
    if sweep_day.lead_in or day not in window:
        return marks
    for airport in airports:
        marks[(airport, "departure", day)] = Mark(day_end(day), swept_at[day])
        if day - 1 in swept_at:
            at = min(swept_at[day - 1], swept_at[day])
            marks[(airport, "arrival", day)] = Mark(day_end(day), at)
    return marks

"""The collector's cost model and range arithmetic (pure functions, no I/O)."""

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_collector.collection.planning import (
    DAY,
    DIRECTIONS,
    RECENT_COST,
    RECENT_REACH,
    Mark,
    Policy,
    day_end,
    day_start,
    mark_after_fetch,
    marks_after_sweep,
    plan_cycle,
    request_cost,
    window_days,
)

TODAY = 20_000  # a UTC day number (2024-10-05)
NOON = day_start(TODAY) + 12 * 3600
POLICY = Policy(backfill_days=7, refresh_days=1, min_gap_seconds=3600, sweep=True)
AIRPORTS = [f"LI{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(60)]


def apply(plan, marks, *, now):
    """Store the marks a fully successful plan earns, as the collection cycle does."""
    for request in plan.airport_requests:
        days = marks.setdefault((request.airport, request.direction), {})
        for day in range(request.begin // DAY, request.end // DAY + 1):
            mark = mark_after_fetch(
                days.get(day), day=day, begin=request.begin, end=request.end, fetched_at=now
            )
            if mark is not None:
                days[day] = mark
    swept_at = {}
    airports = {key[0] for key in marks} | set(plan_airports(plan))
    for sweep_day in plan.sweep_days:
        swept_at[sweep_day.day] = now
        earned = marks_after_sweep(
            sweep_day, swept_at=swept_at, airports=airports, window=window_days(now, 7)
        )
        for (airport, direction, day), mark in earned.items():
            marks.setdefault((airport, direction), {})[day] = mark
    return marks


def plan_airports(plan):
    return {r.airport for r in plan.airport_requests}


def test_request_cost_follows_the_documented_rules():
    assert request_cost(NOON - 3600, NOON, NOON) == 4  # under 24 hours old
    assert request_cost(day_start(TODAY - 3), day_end(TODAY - 3), NOON) == 30  # one partition
    assert request_cost(day_start(TODAY - 3), day_end(TODAY - 2), NOON) == 30  # two partitions
    assert request_cost(day_start(TODAY - 5), day_end(TODAY - 3), NOON) == 180  # three: 60 each


def test_a_new_airport_is_backfilled_in_two_day_requests_cut_on_day_boundaries():
    plan = plan_cycle({}, ["LIRF"], now=NOON, policy=POLICY)
    arrivals = sorted(
        (r for r in plan.airport_requests if r.direction == "arrival"), key=lambda r: r.begin
    )
    # 7 past days and today: four requests of 30 credits (the last pairs yesterday with
    # today, cheaper than yesterday alone at 30 plus today at 4).
    assert arrivals[0].begin == day_start(TODAY - 7)
    assert arrivals[-1].end == NOON
    for before, after in itertools.pairwise(arrivals):
        assert after.begin == before.end + 1  # contiguous, no overlap
    for request in arrivals:
        assert request.begin % DAY == 0  # cut on UTC day boundaries
        assert request.end - request.begin < 2 * DAY  # within OpenSky's interval limit
        assert request.end // DAY - request.begin // DAY + 1 <= 2  # never 3 partitions
    assert sum(r.cost for r in arrivals) == 4 * 30
    assert plan.per_airport_cost == 2 * 4 * 30


def test_nothing_is_asked_again_once_collected_until_the_day_settles():
    marks = apply(plan_cycle({}, ["LIRF"], now=NOON, policy=POLICY), {}, now=NOON)
    later = NOON + 600  # same day, under the minimum gap
    assert plan_cycle(marks, ["LIRF"], now=later, policy=POLICY).airport_requests == []

    # Two hours on: today's new part, at the "recent" price, asked for from RECENT_REACH
    # back: a departure in the air at noon is listed only now that it has landed.
    later = NOON + 2 * 3600
    plan = plan_cycle(marks, ["LIRF"], now=later, policy=POLICY)
    assert {(r.begin, r.end, r.cost) for r in plan.airport_requests} == {
        (later - RECENT_REACH, later, 4)
    }

    # Next day after noon: yesterday's rest, and the day before refreshed once (it settles).
    marks = apply(plan, marks, now=later)
    tomorrow = NOON + DAY
    plan = plan_cycle(marks, ["LIRF"], now=tomorrow, policy=POLICY)
    spans = {(r.direction, r.begin, r.end) for r in plan.airport_requests}
    assert ("arrival", day_start(TODAY - 1), day_end(TODAY - 1)) in spans  # refresh
    marks = apply(plan, marks, now=tomorrow)
    day_after = tomorrow + DAY
    plan = plan_cycle(marks, ["LIRF"], now=day_after, policy=POLICY)
    assert all(r.begin >= day_start(TODAY) for r in plan.airport_requests)


def test_a_tail_fetch_keeps_the_older_fetch_time():
    first = mark_after_fetch(None, day=TODAY, begin=day_start(TODAY), end=NOON, fetched_at=NOON)
    assert first == Mark(NOON, NOON)
    rest = mark_after_fetch(
        first, day=TODAY, begin=NOON + 1, end=day_end(TODAY), fetched_at=NOON + DAY
    )
    assert rest == Mark(day_end(TODAY), NOON)
    assert mark_after_fetch(None, day=TODAY, begin=NOON, end=day_end(TODAY), fetched_at=0) is None


def test_the_sweep_wins_only_when_it_is_cheaper_and_says_what_it_costs():
    for count in (1, 5, 10):
        plan = plan_cycle({}, AIRPORTS[:count], now=NOON, policy=POLICY)
        assert plan.mode == "per-airport"
        assert plan.cost == plan.per_airport_cost == count * 2 * 4 * 30
    plan = plan_cycle({}, AIRPORTS[:50], now=NOON, policy=POLICY)
    assert plan.mode == "sweep"
    # 7 past days + 1 lead-in day, 12 windows each; today per airport (4 credits each).
    assert len(plan.sweep_days) == 8 and plan.sweep_days[0].lead_in
    assert plan.request_count == 8 * 12 + 50 * 2
    assert plan.cost == plan.sweep_cost < plan.per_airport_cost
    never = plan_cycle({}, AIRPORTS[:50], now=NOON, policy=dataclasses.replace(POLICY, sweep=False))
    assert never.mode == "per-airport"


def test_a_sweep_marks_arrivals_only_when_the_day_before_was_swept_too():
    plan = plan_cycle({}, AIRPORTS[:50], now=NOON, policy=POLICY)
    marks = apply(plan, {}, now=NOON)
    assert plan_cycle(marks, AIRPORTS[:50], now=NOON + 60, policy=POLICY).request_count == 0
    assert TODAY - 8 not in marks[(AIRPORTS[0], "departure")]  # the lead-in earns nothing


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=30),
    steps=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12),
)
def test_repeated_cycles_always_leave_the_window_collected(count, steps):
    """Whatever the timing, after a cycle every day up to now is covered and none has gaps."""
    airports, marks, now = AIRPORTS[:count], {}, NOON
    for hours in steps:
        plan = plan_cycle(marks, airports, now=now, policy=POLICY)
        marks = apply(plan, marks, now=now)
        for airport in airports:
            for direction in ("arrival", "departure"):
                days = marks[(airport, direction)]
                for day in window_days(now, POLICY.backfill_days):
                    assert day in days
                    newest = min(day_end(day), now)
                    assert days[day].fetched_until >= newest - POLICY.min_gap_seconds
        now += hours * 3600


@settings(max_examples=60, deadline=None)
@given(minutes=st.lists(st.integers(min_value=1, max_value=24 * 60), min_size=1, max_size=12))
def test_each_fetch_asks_again_for_the_recent_past_at_the_recent_price(minutes):
    """Whatever took off in the last RECENT_REACH is asked for again, for 4 credits a request.

    OpenSky lists a flight only once it has landed, also as a departure: a
    flight in the air at one fetch is listed by the next one, which asks
    again for the seconds before the previous fetch's end.
    """
    policy = dataclasses.replace(POLICY, min_gap_seconds=0)
    now = NOON
    marks = apply(plan_cycle({}, ["LIRF"], now=now, policy=policy), {}, now=now)
    for step in minutes:
        now += step * 60
        plan = plan_cycle(marks, ["LIRF"], now=now, policy=policy)
        for direction in DIRECTIONS:
            asked = sorted(
                (r for r in plan.airport_requests if r.direction == direction),
                key=lambda r: r.begin,
            )
            for before, after in itertools.pairwise(asked):
                assert after.begin > before.end  # nothing asked twice in one cycle
            recent = [r for r in asked if r.end >= now - RECENT_REACH]
            assert recent[0].begin <= now - RECENT_REACH and recent[-1].end == now
            for before, after in itertools.pairwise(recent):
                assert after.begin == before.end + 1  # every recent second
            for request in asked:
                assert request.cost == request_cost(request.begin, request.end, now)
                if request.begin >= now - DAY:
                    assert request.cost == RECENT_COST
        marks = apply(plan, marks, now=now)


@pytest.mark.parametrize("count", [1, 5, 10, 50])
def test_steady_state_cost_per_day(count):
    """With the backfill done, two cycles a day cost a bounded, predictable amount."""
    airports, marks, now = AIRPORTS[:count], {}, NOON
    marks = apply(plan_cycle(marks, airports, now=now, policy=POLICY), marks, now=now)
    spent = []
    for _ in range(8):  # four days of cycles at 00:30 and 12:30
        now += 12 * 3600
        plan = plan_cycle(marks, airports, now=now, policy=POLICY)
        spent.append((plan.request_count, plan.cost))
        marks = apply(plan, marks, now=now)
    per_day = sum(cost for _, cost in spent[-2:])
    assert per_day <= min(count * 2 * (30 + 3 * 4), 720 + count * 2 * 3 * 4)

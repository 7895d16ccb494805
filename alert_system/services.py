"""Alert System logic: evaluate the collector's events, keep each state, say what crossed.

The worker hands :func:`handle_events` each batch of ``to-alert-system``
messages (common.broker.consumer). The whole batch is one transaction:

- ``flights``: for every follower (an interest and its thresholds) that was
  not removed, the condition is ``above`` when the figure is over the upper
  threshold, ``below`` when under the lower one, else ``inside`` (a missing
  threshold never fires). A change of condition bumps the state's
  ``version`` and ``since`` and tells the collector (``alert-state``); a
  change to above or below is a crossing, one email (``crossing`` to the
  notifier). Staying above sends nothing; back inside sends no email and
  re-arms. An interest seen for the first time starts inside, so a first
  figure over its threshold is a crossing too;
- ``removed``: the interests' states are deleted and remembered as removed,
  so an event about them that was already on its way changes nothing.

Events of one interest can arrive out of order (two replicas handle two
batches at once; a failed batch comes back after a later one), so an event
older than what the state already reflects is skipped: one for an earlier
window, or, for the same window, one the collector committed earlier.

What is sent goes through the outbox in the same transaction, with ids
derived from the interest and the state's version: a batch delivered again
after a crash finds the states already changed and sends nothing twice.
"""

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from alert_system.metrics import CROSSINGS, EVALUATIONS, EVENTS, PIPELINE, states_by_condition
from alert_system.models import OUTBOX, AlertState, RemovedInterest, db
from common.airports import airport_name
from common.broker.consumer import DONE, Delivery, Outcome, Park
from common.broker.messages import (
    ALERT_SYSTEM_EVENT,
    THRESHOLD_OF,
    Crossing,
    FlightsEvent,
    Follower,
    RemovedEvent,
    Window,
    as_message,
    crossing_id,
    one_address,
)
from common.broker.messages import AlertState as AlertStateMessage
from common.broker.observability import pipeline_facts
from common.broker.outbox import enqueue
from common.broker.streams import TO_DATA_COLLECTOR, TO_NOTIFIER
from common.timeutil import utc_now

log = logging.getLogger(__name__)


def condition_of(value: int, follower: Follower) -> str:
    """Return where ``value`` stands against the follower's thresholds."""
    if follower.high_value is not None and value > follower.high_value:
        return "above"
    if follower.low_value is not None and value < follower.low_value:
        return "below"
    return "inside"


def is_older(event: FlightsEvent, state: AlertState) -> bool:
    """Tell whether ``event`` reports less recent data than ``state`` already reflects."""
    if event.window.end != state.window_end:
        return event.window.end < state.window_end
    if event.committed_at is None or state.event_at is None:
        return False
    return event.committed_at < state.event_at


@dataclass
class Batch:
    """The events of one batch and what applying them produced."""

    events: list[FlightsEvent | RemovedEvent]
    states: dict[int, AlertState] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    messages: list = field(default_factory=list)
    # Counted once the batch committed: a batch redone after a failure counts once.
    evaluations: Counter = field(default_factory=Counter)
    crossings: Counter = field(default_factory=Counter)

    def interest_ids(self) -> list[int]:
        """Every interest the batch names, in one order (the order rows are locked in)."""
        ids = set()
        for event in self.events:
            if isinstance(event, FlightsEvent):
                ids.update(follower.interest_id for follower in event.followers)
            else:
                ids.update(event.interest_ids)
        return sorted(ids)


def handle_events(deliveries: Sequence[Delivery]) -> list[Outcome]:
    """Apply a batch of ``to-alert-system`` messages in one transaction; one outcome each.

    A message that is not an event (a bug of its writer) is parked; the
    others are applied. A database failure raises: the consumer delivers the
    whole batch again later.
    """
    outcomes: list[Outcome] = []
    events = []
    for delivery in deliveries:
        try:
            events.append(ALERT_SYSTEM_EVENT.validate_python(delivery.payload))
            outcomes.append(DONE)
        except ValidationError as error:
            reason = error.errors(include_url=False)[0]
            outcomes.append(Park(f"not a to-alert-system event: {reason['loc']} {reason['msg']}"))
    batch = Batch(events)
    apply(batch)
    enqueue(db, OUTBOX, batch.messages)
    db.session.commit()
    for event in events:
        EVENTS.labels(event.kind).inc()
    for outcome, count in batch.evaluations.items():
        EVALUATIONS.labels(outcome).inc(count)
    for condition, count in batch.crossings.items():
        CROSSINGS.labels(condition).inc(count)
    return outcomes


def apply(batch: Batch) -> None:
    """Apply the batch's events, in order, to the states (locked); collect what to send."""
    ids = batch.interest_ids()
    if not ids:
        return
    batch.removed = set(
        db.session.scalars(
            select(RemovedInterest.interest_id).where(RemovedInterest.interest_id.in_(ids))
        )
    )
    _create_missing_states(batch)
    batch.states = {
        state.interest_id: state
        for state in db.session.scalars(
            select(AlertState)
            .where(AlertState.interest_id.in_(ids))
            .order_by(AlertState.interest_id)
            .with_for_update()
        )
    }
    for event in batch.events:
        if isinstance(event, RemovedEvent):
            _remove(batch, event.interest_ids)
        else:
            for follower in event.followers:
                _evaluate(batch, event, follower)


def _create_missing_states(batch: Batch) -> None:
    """Give every follower not removed a state (inside) to lock, as its first event finds it.

    A replica creating the same row at the same time makes this wait for
    its commit, then leaves that row as it is.
    """
    first_seen: dict[int, tuple[FlightsEvent, Follower]] = {}
    for event in batch.events:
        if isinstance(event, FlightsEvent):
            for follower in event.followers:
                if follower.interest_id not in batch.removed:
                    first_seen.setdefault(follower.interest_id, (event, follower))
    if not first_seen:
        return
    existing = set(
        db.session.scalars(
            select(AlertState.interest_id).where(AlertState.interest_id.in_(list(first_seen)))
        )
    )
    now = utc_now()
    rows = [
        {
            "interest_id": interest_id,
            "email": follower.email,
            "airport": event.airport,
            "condition": "inside",
            "since": event.committed_at or now,
            "version": 0,
            "value": event.flights,
            "window_start": event.window.start,
            "window_end": event.window.end,
            "event_at": None,
        }
        for interest_id, (event, follower) in sorted(first_seen.items())
        if interest_id not in existing
    ]
    if rows:
        db.session.execute(
            insert(AlertState).values(rows).on_conflict_do_nothing(index_elements=["interest_id"])
        )


def _remove(batch: Batch, interest_ids: list[int]) -> None:
    """Forget the interests' states and remember that they were removed."""
    fresh = [i for i in interest_ids if i not in batch.removed]
    if not fresh:
        return
    db.session.execute(
        insert(RemovedInterest)
        .values([{"interest_id": i} for i in sorted(fresh)])
        .on_conflict_do_nothing(index_elements=["interest_id"])
    )
    db.session.execute(delete(AlertState).where(AlertState.interest_id.in_(fresh)))
    for interest_id in fresh:
        batch.states.pop(interest_id, None)
    batch.removed.update(fresh)


def _evaluate(batch: Batch, event: FlightsEvent, follower: Follower) -> None:
    """Bring one interest's state to ``event``; collect the messages a change sends."""
    state = batch.states.get(follower.interest_id)
    if follower.interest_id in batch.removed or state is None:
        batch.evaluations["removed"] += 1
        return
    if is_older(event, state):
        batch.evaluations["older"] += 1
        return
    now = utc_now()
    state.email = follower.email
    state.airport = event.airport
    state.value = event.flights
    state.window_start, state.window_end = event.window.start, event.window.end
    state.event_at = event.committed_at or state.event_at
    state.updated_at = now
    condition = condition_of(event.flights, follower)
    if condition == state.condition:
        batch.evaluations["unchanged"] += 1
        return
    batch.evaluations["changed"] += 1
    state.condition = condition
    state.version += 1
    state.since = event.committed_at or now
    window = Window(start=event.window.start, end=event.window.end)
    batch.messages.append(
        as_message(
            TO_DATA_COLLECTOR,
            AlertStateMessage(
                interest_id=state.interest_id,
                condition=condition,
                since=state.since,
                version=state.version,
                value=state.value,
                window=window,
            ),
        )
    )
    if condition == "inside":
        return
    try:
        one_address(follower.email)
    except ValueError as refusal:
        # A row stored under older rules: no email can go there, and the other
        # followers' crossings must not wait on it.
        log.warning(
            "interest %s crossed %s, but its address is refused (%s): no email",
            follower.interest_id,
            condition,
            refusal,
        )
        return
    threshold = THRESHOLD_OF[condition]
    batch.crossings[condition] += 1
    batch.messages.append(
        as_message(
            TO_NOTIFIER,
            Crossing(
                crossing_id=crossing_id(state.interest_id, state.version),
                interest_id=state.interest_id,
                email=follower.email,
                airport=event.airport,
                airport_name=airport_name(event.airport) or event.airport,
                condition=condition,
                threshold=threshold,
                limit=getattr(follower, threshold),
                value=event.flights,
                window=window,
                since=state.since,
                committed_at=event.committed_at,
            ),
        )
    )


def reap_removed_interests(*, older_than_days: float) -> int:
    """Forget interests removed longer ago than any event about them can still arrive."""
    cutoff = utc_now() - timedelta(days=older_than_days)
    result = db.session.execute(delete(RemovedInterest).where(RemovedInterest.removed_at < cutoff))
    db.session.commit()
    if result.rowcount:
        log.info("forgot %d interests removed over %g days ago", result.rowcount, older_than_days)
    return result.rowcount


def health_facts() -> dict:
    """Return the ``alerts`` part of ``/health``: interests by condition, the pipeline's state."""
    return {"interests": states_by_condition(), **pipeline_facts(PIPELINE)}

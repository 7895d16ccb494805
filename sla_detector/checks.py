"""One check: ask Prometheus for every metric, keep the samples, raise and end breaches.

The worker looks every second whether a check is due (T_check after the
last one, by the database's clock) and claims it with one UPDATE of the
state row, so however many replicas run, one of them checks each period.
The queries go out with no transaction open, within half of T_check; what
they gave is then written in one transaction, which first locks the state
row and makes sure no later check has claimed a period since: a check that
outlasted its period (a Prometheus slower than that) records nothing, so
no period is sampled twice. That transaction writes each metric's sample
(the last ``SAMPLES_KEPT`` kept), its last outcome, the breaches raised
(each with its ``sla-breach`` event in the outbox, published by the relay
once committed) and those ended.

A metric whose query gave nothing (Prometheus down, the query refused, no
series matching) gets no sample at that check, and its outcome says why: it
shows in ``/health`` (degraded) and the log, and it can never raise a breach.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from common.broker.connection import Message
from common.broker.outbox import enqueue
from common.broker.streams import SLA_BREACH
from common.process.heartbeat import progress
from common.timeutil import isoformat_utc, utc_now
from sla_detector import configuration, prometheus
from sla_detector.detector import SAMPLES_KEPT, Sample, judge, observed, sample_of
from sla_detector.inputs import MetricSla, SlaConfig
from sla_detector.metrics import BREACHES, QUERIES
from sla_detector.models import OUTBOX, OUTCOME_OK, Breach, DetectorState, MetricState, db
from sla_detector.models import Sample as SampleRow

log = logging.getLogger(__name__)

NO_DATA = "no data"
NOT_ASKED = "not asked: the check ran out of its time (Prometheus is slow)"


@dataclass
class Answer:
    """What Prometheus gave for one metric at this check."""

    values: list[float] = field(default_factory=list)
    outcome: str = OUTCOME_OK


# The worker looks this often whether a check is due.
LOOK_EVERY_SECONDS = 1.0


def claim_due_check(period_seconds: int) -> datetime | None:
    """Claim this period's check if it is due (commits); return the claim, None if not due.

    Due half a look early: the looks come every second, each a few milliseconds
    late, and a check found due a hair short of its period would otherwise
    wait for the next look, a second late every other time.
    """
    due_after = timedelta(seconds=period_seconds - LOOK_EVERY_SECONDS / 2)
    due = or_(
        DetectorState.last_check_at.is_(None),
        DetectorState.last_check_at <= func.now() - due_after,
    )
    claimed = db.session.scalar(
        update(DetectorState)
        .where(DetectorState.id == 1, due)
        .values(last_check_at=func.now())
        .returning(DetectorState.last_check_at)
    )
    db.session.commit()
    return claimed


def check_if_due() -> bool:
    """Run a check when one is due; return whether one ran."""
    config = configuration.current()
    db.session.rollback()
    period = configuration.check_seconds(config)
    claimed = claim_due_check(period)
    if claimed is None:
        return False
    check(config, claimed, period_seconds=period)
    return True


def ask(metric: MetricSla, deadline: float) -> Answer:
    """Query Prometheus for one metric by ``deadline``; never raise (the outcome says why not)."""
    left = min(deadline - time.monotonic(), prometheus.QUERY_TIMEOUT_SECONDS)
    if left <= 0:
        return Answer(outcome=NOT_ASKED)  # not sent: not a query of sla_queries_total
    try:
        values = prometheus.query(current_app.config["PROMETHEUS_URL"], metric.query, timeout=left)
    except prometheus.QueryRefusedError as error:
        QUERIES.labels("refused").inc()
        return Answer(outcome=f"query refused by Prometheus: {error}")
    except prometheus.PrometheusUnavailableError as error:
        QUERIES.labels("unavailable").inc()
        return Answer(outcome=f"Prometheus unavailable: {error}")
    finally:
        progress()
    QUERIES.labels("ok" if values else "no_data").inc()
    return Answer(values) if values else Answer(outcome=NO_DATA)


def check(config: SlaConfig, claimed: datetime, *, period_seconds: float) -> None:
    """Check every configured metric and record what follows, within its period (commits).

    ``claimed``: when this check claimed its period (the database's time). The
    queries stop at half the period; what they gave is recorded only while the
    claim is the last one and its period is not over (the next claim may come
    any moment after), so a period is sampled once.
    """
    started = time.monotonic()
    # Asked from a different metric each period: when Prometheus is too slow for all of them,
    # the ones it has no time for are not always the same (their breaches could never end).
    metrics = config.metrics
    first = int(claimed.timestamp() // period_seconds) % len(metrics) if metrics else 0
    in_turn = metrics[first:] + metrics[:first]
    answers = {metric.name: ask(metric, started + period_seconds / 2) for metric in in_turn}
    state = db.session.get(DetectorState, 1, with_for_update=True, populate_existing=True)
    over = time.monotonic() - started > period_seconds - LOOK_EVERY_SECONDS
    if state.last_check_at != claimed or over:
        db.session.rollback()
        log.warning(
            "SLA check of the period claimed at %s took longer than it: "
            "a later check records instead",
            isoformat_utc(claimed),
        )
        return
    for name, answer in answers.items():
        if answer.outcome != OUTCOME_OK:
            log.warning("SLA check of %s: %s; no sample taken", name, answer.outcome)
    now = utc_now()
    _forget_unconfigured(config, now)
    raised = []
    for metric in config.metrics:
        raised += _record(metric, answers[metric.name], now)
    db.session.commit()
    for breach in raised:
        BREACHES.labels(breach.metric, breach.violated).inc()
        log.warning(
            "SLA breach of %s: %s %s %g (limit %g; %d of the last %d samples below, %d above)",
            breach.metric,
            breach.query,
            "above" if breach.violated == "max" else "below",
            breach.value,
            breach.limit,
            breach.below,
            SAMPLES_KEPT,
            breach.above,
        )


def _forget_unconfigured(config: SlaConfig, now: datetime) -> None:
    """Drop the state and samples of metrics no longer configured; end their open breaches."""
    names = [metric.name for metric in config.metrics]
    gone = db.session.scalars(select(MetricState).where(MetricState.name.not_in(names))).all()
    for state in gone:
        _end(state, ("min", "max"), now)
        db.session.delete(state)


def _record(metric: MetricSla, answer: Answer, now: datetime) -> list[Breach]:
    """Record one metric's check; return the breaches it raised."""
    state = db.session.get(MetricState, metric.name, with_for_update=True)
    if state is None:
        state = MetricState(name=metric.name, query=metric.query)
        db.session.add(state)
    elif state.query != metric.query:
        # Samples of another query say nothing of this one.
        _end(state, ("min", "max"), now)
        db.session.execute(delete(SampleRow).where(SampleRow.metric == metric.name))
        state.query = metric.query
    state.last_checked_at, state.last_outcome = now, answer.outcome
    if not answer.values:
        return []
    sample = sample_of(answer.values)
    db.session.add(SampleRow(metric=metric.name, taken_at=now, low=sample.low, high=sample.high))
    db.session.flush()
    samples = _kept_samples(metric.name)
    open_sides = {side for side in ("min", "max") if _open_breach(state, side)}
    verdict = judge(samples, minimum=metric.min, maximum=metric.max, open_sides=open_sides)
    _end(state, verdict.ended, now)
    raised = []
    for side in verdict.raised:
        limit = metric.min if side == "min" else metric.max
        breach = _raise(metric, side, limit, observed(samples, side, limit), verdict, now)
        setattr(state, f"open_{side}_breach", breach.breach_id)
        raised.append(breach)
    return raised


def _kept_samples(name: str) -> list[Sample]:
    """Delete all but the newest SAMPLES_KEPT samples of a metric; return those, oldest first."""
    newest = db.session.scalars(
        select(SampleRow)
        .where(SampleRow.metric == name)
        .order_by(SampleRow.taken_at.desc(), SampleRow.id.desc())
        .limit(SAMPLES_KEPT)
    ).all()
    db.session.execute(
        delete(SampleRow).where(
            SampleRow.metric == name, SampleRow.id.not_in([row.id for row in newest])
        )
    )
    return [Sample(row.low, row.high) for row in reversed(newest)]


def _open_breach(state: MetricState, side: str) -> str | None:
    return getattr(state, f"open_{side}_breach")


def _end(state: MetricState, sides, now: datetime) -> None:
    """End the open breaches of ``state`` on ``sides``."""
    for side in sides:
        breach_id = _open_breach(state, side)
        if breach_id is None:
            continue
        breach = db.session.get(Breach, breach_id)
        if breach is not None and breach.ended_at is None:
            breach.ended_at = now
            log.info("SLA breach of %s (%s) ended", breach.metric, side)
        setattr(state, f"open_{side}_breach", None)


def _raise(metric: MetricSla, side: str, limit: float, value: float, verdict, now) -> Breach:
    """Record a breach and, in the same transaction, its event for the notifier."""
    at = isoformat_utc(now)
    identity = {"metric": metric.name, "query": metric.query, "violated": side, "at": at}
    breach_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    breach = Breach(
        breach_id=breach_id,
        metric=metric.name,
        query=metric.query,
        violated=side,
        limit=limit,
        value=value,
        below=verdict.below,
        above=verdict.above,
        at=now,
    )
    db.session.add(breach)
    recipient = current_app.config["SLA_ALERT_EMAIL"]
    if recipient:
        payload = {"kind": "sla-breach", "to": recipient, **breach.to_dict()}
        del payload["ended_at"]
        enqueue(db, OUTBOX, [Message(SLA_BREACH, f"sla-breach:{breach_id}", payload)])
    return breach

"""At most once per ``Idempotency-Key``: the protocol both user writes go through.

``POST /users`` and ``DELETE /users/<email>`` each carry a key. A write is
one :class:`Write`: the answer it predicts for itself and the work it does,
built once as SQL. :func:`run_once` sends it to PostgreSQL in one round trip
(a :class:`~common.db.batch.Batch`), which runs it as one transaction:

1. **Lock the subject.** A transaction-scoped advisory lock on the email the
   request writes: requests on one email run one at a time, so what the next
   statement reads of that email (does the user exist? is a deletion still
   pending?) stays true until the commit.
2. **Claim the key with the answer.** One statement inserts the key, already
   completed with the answer the work will give, and (only if the key was
   claimed) does the work. A live key is left alone; an expired one is taken
   over as new.
3. **Commit** the claim, the work and the answer together, as the batch
   ends: a crash at any point rolls all of them back, so a key is never left
   "in progress" and a retry simply does the work.
4. **Replay.** When the key was already live, its stored answer is returned
   (``Idempotent-Replayed: true``), unless the key belongs to a different
   request (another method, path or body: its fingerprint differs): 422.

Keys belong to their caller (with authentication on, a hash of the
credential's identity): two callers' identical keys never meet. Concurrent
duplicates of one key wait for the first (PostgreSQL makes a
second INSERT of the key wait for the first transaction) and replay its
answer. Validation errors are raised before any of this, so a corrected
retry may reuse its key. A write may refuse without storing anything (its
predicted status is NULL): the refusal is an error the caller raises, so the
same request succeeds later. Keys expire ``IDEMPOTENCY_KEY_RETENTION_HOURS``
after first use; the worker's reaper deletes them.
"""

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    CTE,
    ColumnElement,
    Interval,
    Row,
    Select,
    bindparam,
    delete,
    exists,
    func,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from common.db.batch import Batch
from common.db.connections import autocommit_statements
from common.web.errors import ApiError
from user_manager import faults
from user_manager.metrics import IDEMPOTENCY_CONFLICTS, IDEMPOTENCY_REPLAYS
from user_manager.models import IdempotencyKey, db

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAY_HEADER = "Idempotent-Replayed"
KEYS = IdempotencyKey.__table__
# The email the request writes; a write's own SQL refers to it too.
SUBJECT = bindparam("subject")
RETENTION = bindparam("retention", type_=Interval)
LIVE = KEYS.c.created_at >= func.now() - RETENTION
# Two concurrent inserts of one tax code (under two emails) cannot both win; the loser's
# transaction is rolled back and run again, when it sees the winner and answers 409.
ATTEMPTS_ON_INTEGRITY_ERROR = 3

# Step 1: the subject's lock, released by the commit or rollback. hashtextextended maps the
# email to the 64-bit key space of advisory locks.
LOCK_SUBJECT = "SELECT pg_advisory_xact_lock(hashtextextended(%(subject)s, 0))"
# Step 4 when the claim statement could not see the key yet: it was committed by a
# concurrent request after the statement's snapshot (the claim waited for it).
STORED_ANSWER = select(KEYS.c.response_code, KEYS.c.response_body, KEYS.c.request_fingerprint)
# Parameter names never equal a column's: an UPDATE in the same statement would take a
# parameter named like one of its table's columns as a value to SET.
THIS_KEY = (KEYS.c.caller == bindparam("key_caller")) & (KEYS.c.key == bindparam("key_value"))


@dataclass(frozen=True)
class KeyedRequest:
    """A request with its key and caller; method, normalized path and body make it "the same"."""

    key: str
    method: str
    path: str
    body: dict[str, Any] | None
    subject: str
    caller: str = ""

    @property
    def fingerprint(self) -> str:
        """Hash of the method, normalized path and normalized body."""
        canonical = json.dumps(
            [self.method, self.path, self.body], sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    """The answer to a state-changing request, fresh or replayed.

    ``outbox_id`` is the outbox message the request wrote, which it delivers
    itself right after the commit (None for replays and writes without one).
    """

    status: int
    body: dict[str, Any]
    replayed: bool = False
    outbox_id: int | None = None


@dataclass(frozen=True)
class Claim:
    """Step 2 of a kind of write, as SQL: its predicted answer, and the key claimed with it."""

    answer: CTE
    cte: CTE

    def made_with(self, status: int) -> ColumnElement:
        """Return the condition of the write's work: the key was claimed with ``status``."""
        return exists(select(self.cte.c.response_code).where(self.cte.c.response_code == status))


@dataclass(frozen=True)
class Write:
    """One kind of state-changing request: step 2's statement, and the batch of steps 1-3."""

    statement: Select
    batch: Batch


def require_key(value: str | None) -> str:
    """Return the header's value, or raise the seed's 400 when it is missing or malformed."""
    if value is None or not value.strip():
        raise ApiError(400, "The Idempotency-Key header is required for this request.")
    if not KEY_PATTERN.fullmatch(value):
        raise ApiError(400, "The Idempotency-Key header must be 1 to 255 visible ASCII characters.")
    return value


def claim(*, status: ColumnElement, body: ColumnElement) -> Claim:
    """Build (once, at import) the claim of a key with the answer a write predicts.

    ``status`` and ``body`` (JSON text) are SQL for the answer the write will
    give, read under the subject's lock; a NULL status refuses, and nothing
    is stored. A live key is left alone; an expired one is taken over.
    """
    answer = select(status.label("status"), body.label("body")).cte("answer")
    columns = {
        "caller": bindparam("key_caller"),
        "key": bindparam("key_value"),
        "status": literal("completed"),
        "created_at": func.now(),
        "response_code": answer.c.status,
        "response_body": answer.c.body,
        "user_email": SUBJECT,
        "request_method": bindparam("method"),
        "request_path": bindparam("path"),
        "request_fingerprint": bindparam("fingerprint"),
    }
    statement = insert(KEYS).from_select(
        list(columns), select(*columns.values()).where(answer.c.status.is_not(None))
    )
    statement = statement.on_conflict_do_update(
        index_elements=[KEYS.c.caller, KEYS.c.key],
        set_={name: statement.excluded[name] for name in columns if name not in ("caller", "key")},
        where=~LIVE,
    )
    returning = statement.returning(KEYS.c.response_code, KEYS.c.response_body)
    return Claim(answer=answer, cte=returning.cte("claim"))


def build_write(
    claim: Claim, *, work: Sequence[CTE], outbox_id: ColumnElement | None = None
) -> Write:
    """Build (once, at import) the statement of step 2: claim the key, do ``work``, report.

    Each CTE of ``work`` must act only under ``claim.made_with(...)``.
    ``outbox_id``, when given, is SQL for the outbox message the work queued.
    """
    live = STORED_ANSWER.where(THIS_KEY, LIVE).subquery("live")
    outputs = [] if outbox_id is None else [outbox_id.label("outbox_id")]
    statement = (
        select(
            select(claim.cte.c.response_code).scalar_subquery().label("claimed_status"),
            select(claim.cte.c.response_body).scalar_subquery().label("claimed_body"),
            select(claim.answer.c.status).scalar_subquery().label("predicted_status"),
            live.c.response_code,
            live.c.response_body,
            live.c.request_fingerprint,
            *outputs,
        )
        .select_from(select(literal(1)).subquery("one").outerjoin(live, true()))
        .add_cte(*work)
    )
    return Write(statement, Batch.of(LOCK_SUBJECT, statement=statement))


def run_once(
    write: Write, request: KeyedRequest, params: dict[str, Any], *, refusal: ApiError | None = None
) -> Outcome:
    """Run ``write`` at most once per key (see the module docstring); replay repeats.

    ``params`` are the write's own parameters; ``refusal`` is raised when the
    write predicts a NULL status.
    """
    params = {
        **params,
        "key_value": request.key,
        "key_caller": request.caller,
        "subject": request.subject,
        "method": request.method,
        "path": request.path,
        "fingerprint": request.fingerprint,
        "retention": _retention(),
    }
    for attempt in range(1, ATTEMPTS_ON_INTEGRITY_ERROR + 1):
        try:
            row = _send(write, params)
            break
        except IntegrityError:
            db.session.rollback()
            if attempt == ATTEMPTS_ON_INTEGRITY_ERROR:
                raise
            log.info("%s lost a race for a unique value; running it again", request.method)
    if row.claimed_status is not None:
        outbox_id = row._mapping.get("outbox_id")
        return Outcome(row.claimed_status, json.loads(row.claimed_body), outbox_id=outbox_id)
    if row.response_code is not None:
        return _replay(row, request)
    if row.predicted_status is None and refusal is not None:
        raise refusal
    autocommit_statements(db)
    stored = db.session.execute(STORED_ANSWER.where(THIS_KEY), params).first()
    if stored is None:
        # Expired and reaped between our claim and this read: the client reused an old key.
        IDEMPOTENCY_CONFLICTS.labels("409").inc()
        raise ApiError(409, "This Idempotency-Key has just expired; retry the request.")
    return _replay(stored, request)


def _send(write: Write, params: dict[str, Any]) -> Row:
    """Run steps 1 to 3: lock, claim and work, committed by the time PostgreSQL answers.

    A request that asks for a test fault point runs the same batch in a
    transaction instead, so that the point falls between the work and its
    commit, where a crash must roll everything back.
    """
    if not faults.requested():
        return write.batch.run(db, params)
    row = write.batch.run(db, params, commit=False)
    if row.claimed_status is not None:
        faults.crash_point("crash-before-commit")
        faults.pause_point("pause-before-commit")
    db.session.commit()
    return row


def _replay(stored, request: KeyedRequest) -> Outcome:
    """Replay a completed key's answer, unless it belongs to another request (422)."""
    if stored.request_fingerprint != request.fingerprint:
        IDEMPOTENCY_CONFLICTS.labels("422").inc()
        raise ApiError(
            422,
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
        )
    IDEMPOTENCY_REPLAYS.labels(request.method).inc()
    # Only completed keys are ever committed (claim and completion share a transaction).
    return Outcome(stored.response_code, json.loads(stored.response_body or "{}"), replayed=True)


def _retention() -> timedelta:
    return timedelta(hours=current_app.config["IDEMPOTENCY_KEY_RETENTION_HOURS"])


def reap_expired_keys(*, batch_size: int) -> int:
    """Delete keys older than the retention period, ``batch_size`` per transaction; return count.

    Rows locked by a request taking over an expired key are skipped, so the
    reaper never waits on (or blocks) a live request, and several replicas
    running it at once share the work.
    """
    total = 0
    while True:
        expired = (
            select(KEYS.c.key)
            .where(~LIVE)
            .order_by(KEYS.c.created_at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        deleted = db.session.execute(
            delete(KEYS).where(KEYS.c.key.in_(expired)), {"retention": _retention()}
        ).rowcount
        db.session.commit()
        total += deleted
        if deleted < batch_size:
            break
    if total:
        log.info("deleted %d expired idempotency keys", total)
    return total

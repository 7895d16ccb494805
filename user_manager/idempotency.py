"""At-most-once execution of state-changing requests, keyed by the ``Idempotency-Key`` header.

Design (issue "at-most-once", option a): the idempotency key is claimed, the
work is done and the key is completed in ONE database transaction.
PostgreSQL makes a concurrent INSERT of the same key wait until the first
transaction ends; the waiter then sees the completed key and replays its
answer. We chose this over a visible ``in-progress`` state with a lease
(option b) because it has no timing to tune and no state a crash can strand.
Consequences that matter to clients:

- a crash at any point rolls back the claim together with the work, so a key
  is never left ``in-progress`` and a retry simply does the work;
- concurrent duplicates never see ``in-progress``: they wait (milliseconds)
  and get the original answer, marked ``Idempotent-Replayed: true``;
- validation errors are raised before the claim, so they are never stored and
  a corrected retry with the same key works;
- a key is bound to its request by a fingerprint of method, normalized path
  and normalized body: reusing it for another request is a 422;
- a key expires ``IDEMPOTENCY_KEY_RETENTION_HOURS`` after first use: reused
  later it starts afresh, and the worker's reaper deletes expired keys.

Two ways to run a request once, with the same guarantees:

- :func:`execute_once` runs any operation between the claim and the
  completion (claim INSERT, the work, completion UPDATE, COMMIT);
- :func:`insert_once` is for work that is one INSERT whose success answer is
  known in advance (creating a user): the claim, stored already completed
  with that answer, and the INSERT (``... SELECT ... FROM claim``, so it runs
  only if the key was claimed) are ONE statement, which also returns the
  stored answer of a live key for a replay. A new request then costs that
  statement and the COMMIT; a replay costs one statement. If the INSERT
  finds a conflict, the caller computes the answer in the same transaction
  and the stored one is corrected before the commit, so no other request
  ever sees the predicted answer of a request that did not get it.
"""

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from common.errors import ApiError
from user_manager import faults
from user_manager.metrics import IDEMPOTENCY_CONFLICTS, IDEMPOTENCY_REPLAYS
from user_manager.models import IdempotencyKey, db

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAY_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Outcome:
    """The answer to a state-changing request, fresh or replayed.

    ``outbox_ids`` lists the outbox messages the request wrote, which it
    delivers itself right after the commit (empty for replays).
    """

    status: int
    body: dict[str, Any]
    replayed: bool = False
    outbox_ids: tuple[int, ...] = ()


def require_key(value: str | None) -> str:
    """Return the header's value, or raise the seed's 400 when it is missing or malformed."""
    if value is None or not value.strip():
        raise ApiError(400, "The Idempotency-Key header is required for this request.")
    if not KEY_PATTERN.fullmatch(value):
        raise ApiError(400, "The Idempotency-Key header must be 1 to 255 visible ASCII characters.")
    return value


def request_fingerprint(method: str, path: str, body: dict[str, Any] | None) -> str:
    """Hash what makes two requests "the same": method, normalized path and normalized body."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _retention() -> timedelta:
    return timedelta(hours=current_app.config["IDEMPOTENCY_KEY_RETENTION_HOURS"])


def execute_once(
    *,
    key: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    user_email: str,
    operation: Callable[[], Outcome],
) -> Outcome:
    """Run ``operation`` at most once per key; replay the stored outcome for repeats."""
    fingerprint = request_fingerprint(method, path, body)
    session = db.session
    claim = insert(IdempotencyKey).values(
        key=key,
        status="in-progress",
        created_at=func.now(),
        user_email=user_email,
        request_method=method,
        request_path=path,
        request_fingerprint=fingerprint,
    )
    # A live key conflicts and is left alone (we replay it below); an expired one
    # is taken over in the same statement, so the key acts as new.
    claim = claim.on_conflict_do_update(
        index_elements=[IdempotencyKey.key],
        set_={
            "status": claim.excluded.status,
            "created_at": claim.excluded.created_at,
            "response_code": None,
            "response_body": None,
            "user_email": claim.excluded.user_email,
            "request_method": claim.excluded.request_method,
            "request_path": claim.excluded.request_path,
            "request_fingerprint": claim.excluded.request_fingerprint,
        },
        where=IdempotencyKey.created_at < func.now() - _retention(),
    ).returning(IdempotencyKey.key)
    if session.execute(claim).first() is None:
        session.rollback()
        outcome = _replay(key=key, fingerprint=fingerprint)
        IDEMPOTENCY_REPLAYS.labels(method).inc()
        return outcome

    outcome = operation()
    session.execute(
        IdempotencyKey.__table__.update()
        .where(IdempotencyKey.key == key)
        .values(
            status="completed",
            response_code=outcome.status,
            response_body=json.dumps(outcome.body),
        )
    )
    faults.crash_point("crash-before-commit")
    session.commit()
    return outcome


# The claim of insert_once, as a CTE. The key is stored completed with the predicted answer;
# an expired key is taken over; a live one is left alone (and read by the outer SELECT).
CLAIM_CTE = """
claim AS (
    INSERT INTO idempotency_keys AS k (
        key, status, created_at, response_code, response_body,
        user_email, request_method, request_path, request_fingerprint)
    VALUES (
        :key, 'completed', now(), :response_code, :response_body,
        :user_email, :request_method, :request_path, :request_fingerprint)
    ON CONFLICT (key) DO UPDATE SET
        status = EXCLUDED.status, created_at = EXCLUDED.created_at,
        response_code = EXCLUDED.response_code, response_body = EXCLUDED.response_body,
        user_email = EXCLUDED.user_email, request_method = EXCLUDED.request_method,
        request_path = EXCLUDED.request_path,
        request_fingerprint = EXCLUDED.request_fingerprint
    WHERE k.created_at < now() - make_interval(secs => :retention_seconds)
    RETURNING 1
)"""
# A live key as this statement's snapshot sees it (absent if committed by a concurrent
# request after the snapshot was taken: the claim waited for it; a fresh read follows).
OUTCOME_SELECT = """
SELECT EXISTS (SELECT FROM claim) AS claimed, EXISTS (SELECT FROM work) AS done,
       stored.response_code, stored.response_body, stored.request_fingerprint
FROM (VALUES (1)) AS one
LEFT JOIN idempotency_keys AS stored
       ON stored.key = :key AND stored.status = 'completed'
      AND stored.created_at >= now() - make_interval(secs => :retention_seconds)"""
COMPLETE_UPDATE = text(
    "UPDATE idempotency_keys SET response_code = :response_code, response_body = :response_body "
    "WHERE key = :key"
)


def insert_statement(work_cte: str):
    """Build (once, at import) the statement of :func:`insert_once` for one kind of work.

    ``work_cte`` is ``INSERT ... SELECT ... FROM claim ... RETURNING 1`` (the
    work, done only when the key was claimed); its parameters are the
    caller's, beside the claim's.
    """
    return text(f"WITH {CLAIM_CTE.strip()},\nwork AS ({work_cte})\n{OUTCOME_SELECT.strip()}")


def insert_once(
    *,
    statement,
    params: dict[str, Any],
    key: str,
    method: str,
    path: str,
    body: dict[str, Any],
    user_email: str,
    done: Outcome,
    otherwise: Callable[[], Outcome],
) -> Outcome:
    """Claim the key and do the INSERT of ``statement`` in one statement; see the module doc.

    ``done`` is the answer when the INSERT wrote its row; ``otherwise()`` is
    called (in the same transaction) when it did not.
    """
    fingerprint = request_fingerprint(method, path, body)
    session = db.session
    row = session.execute(
        statement,
        {
            **params,
            "key": key,
            "response_code": done.status,
            "response_body": json.dumps(done.body),
            "user_email": user_email,
            "request_method": method,
            "request_path": path,
            "request_fingerprint": fingerprint,
            "retention_seconds": _retention().total_seconds(),
        },
    ).one()
    if not row.claimed:
        session.rollback()
        if row.response_code is None:
            replayed = _replay(key=key, fingerprint=fingerprint)
        else:
            replayed = _stored_outcome(row, fingerprint)
        IDEMPOTENCY_REPLAYS.labels(method).inc()
        return replayed
    outcome = done
    if not row.done:
        outcome = otherwise()
        session.execute(
            COMPLETE_UPDATE,
            {
                "key": key,
                "response_code": outcome.status,
                "response_body": json.dumps(outcome.body),
            },
        )
    faults.crash_point("crash-before-commit")
    session.commit()
    return outcome


def _stored_outcome(stored, fingerprint: str) -> Outcome:
    """Replay a completed key's answer, unless it belongs to another request (422)."""
    if stored.request_fingerprint != fingerprint:
        IDEMPOTENCY_CONFLICTS.labels("422").inc()
        raise ApiError(
            422,
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
        )
    # Only completed keys are ever committed (claim and completion share a transaction).
    return Outcome(stored.response_code, json.loads(stored.response_body or "{}"), replayed=True)


def _replay(*, key: str, fingerprint: str) -> Outcome:
    stored = db.session.get(IdempotencyKey, key)
    if stored is None:
        # Expired and reaped between our INSERT and this read: the client reused an old key.
        IDEMPOTENCY_CONFLICTS.labels("409").inc()
        raise ApiError(409, "This Idempotency-Key has just expired; retry the request.")
    return _stored_outcome(stored, fingerprint)


def reap_expired_keys(*, batch_size: int) -> int:
    """Delete keys older than the retention period, ``batch_size`` per transaction; return count.

    Rows locked by a request taking over an expired key are skipped, so the
    reaper never waits on (or blocks) a live request, and several replicas
    running it at once share the work.
    """
    total = 0
    while True:
        expired = (
            select(IdempotencyKey.key)
            .where(IdempotencyKey.created_at < func.now() - _retention())
            .order_by(IdempotencyKey.created_at)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        deleted = db.session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.key.in_(expired))
        ).rowcount
        db.session.commit()
        total += deleted
        if deleted < batch_size:
            break
    if total:
        log.info("deleted %d expired idempotency keys", total)
    return total

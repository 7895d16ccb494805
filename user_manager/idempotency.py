"""At most once per ``Idempotency-Key``: claim, work, complete, replay.

``POST /users`` and ``DELETE /users/<email>`` each carry a key. Each is a
:class:`Write` (``services.py``): the SQL of its work. :func:`run_once`
sends the phases below to PostgreSQL as one message of several statements
(a :class:`~common.db.batch.Batch`). PostgreSQL runs such a message as one
transaction: all of it commits, or none of it, in one round trip. Each
statement sees what the statements before it did, so the phases run in the
order they read here:

1. **Lock** the subject, the email the request writes: requests on one
   email run one at a time, so what the work reads of that email (does the
   user exist? is a deletion still pending?) stays true until the commit.
2. **Claim** the key: insert it ``in-progress``. A live key is left alone
   (the request replays it); an expired one is taken over as new.
3. **Work**, only on a key this request claimed: the write decides its
   answer, records it on the key and does what the answer says.
4. **Complete** the key with that answer. A claim the work left without an
   answer was refused: it is removed, so nothing is stored and the same
   request succeeds later.
5. **Replay**: read the key as it now stands. Written by this transaction,
   it holds this request's own answer; otherwise the answer of the request
   that first used the key, replayed (``Idempotent-Replayed: true``) when
   the fingerprint matches, else 422.

A crash at any point rolls all of it back: a committed key is always
``completed``, never left "in progress", and a retry simply does the work.
That is also why the only ``in-progress`` key a transaction can see is the
one it claimed itself. Keys belong to their caller (with authentication
on, a hash of the credential's identity): two callers' identical keys never
meet. A concurrent duplicate of a key waits at the claim until the first
request commits, then replays its answer. Validation errors are raised
before any of this, so a corrected retry may reuse its key. Keys expire
``IDEMPOTENCY_KEY_RETENTION_HOURS`` after first use; the worker's reaper
deletes them.
"""

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError

from common.db.batch import Batch
from common.web.errors import ApiError
from user_manager import faults
from user_manager.metrics import IDEMPOTENCY_CONFLICTS, IDEMPOTENCY_REPLAYS
from user_manager.models import db

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
REPLAY_HEADER = "Idempotent-Replayed"
# Two concurrent inserts of one tax code (under two emails) cannot both win; the loser's
# transaction is rolled back and run again, when it sees the winner and answers 409.
ATTEMPTS_ON_INTEGRITY_ERROR = 3

# The phases' SQL. Parameters every phase may use: caller and key (the key's identity),
# subject (the email the request writes), method, path and fingerprint (the request), and
# retention (how long a key lives).

# 1. Lock the subject until the commit. hashtextextended maps the email to the 64-bit key
# space of advisory locks.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(subject)s, 0))"

# 2. Claim the key. A concurrent request holding the same key makes this INSERT wait for
# its commit; a live key is then left as it is (and locked until this transaction ends);
# an expired one is taken over, its old answer forgotten.
CLAIM = """
INSERT INTO idempotency_keys AS stored (
    caller, key, status, created_at,
    user_email, request_method, request_path, request_fingerprint
)
VALUES (
    %(caller)s, %(key)s, 'in-progress', now(),
    %(subject)s, %(method)s, %(path)s, %(fingerprint)s
)
ON CONFLICT (caller, key) DO UPDATE SET
    status = 'in-progress',
    created_at = now(),
    response_code = NULL,
    response_body = NULL,
    user_email = excluded.user_email,
    request_method = excluded.request_method,
    request_path = excluded.request_path,
    request_fingerprint = excluded.request_fingerprint
WHERE stored.created_at < now() - %(retention)s
"""

# 3. The work is each write's own SQL (services.py). It acts only through the key it
# claimed, the row of this caller and key still 'in-progress': it sets response_code and
# response_body there, and does its work when that answer says so. For a replayed key
# there is no such row, and the work does nothing.

# 4. Complete: a claim without an answer was refused and is removed; else it is completed.
COMPLETE = """
DELETE FROM idempotency_keys
WHERE caller = %(caller)s AND key = %(key)s AND status = 'in-progress'
    AND response_code IS NULL;
UPDATE idempotency_keys SET status = 'completed'
WHERE caller = %(caller)s AND key = %(key)s AND status = 'in-progress'
"""

# 5. Replay: the key as it now stands, and whether this transaction wrote it (xmin, the
# transaction that wrote this version of the row): then it holds this request's own answer.
# No row: the work refused, and nothing was stored.
REPLAY = """
SELECT response_code, response_body, request_fingerprint,
    xmin = pg_current_xact_id()::xid AS answered_here
FROM idempotency_keys
WHERE caller = %(caller)s AND key = %(key)s
"""


@dataclass(frozen=True)
class Write:
    """One kind of state-changing request: its work, and the phases around it as one message.

    ``refusal`` is raised when the work refuses (leaves its claim without an answer).
    """

    work: str
    batch: Batch
    refusal: ApiError | None = None

    @classmethod
    def of(cls, work: str, *, refusal: ApiError | None = None) -> "Write":
        """Build (once, at import) the write whose work phase is the SQL ``work``."""
        return cls(work, Batch.of(LOCK, CLAIM, work, COMPLETE, REPLAY), refusal)


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
    """The answer to a state-changing request, fresh or replayed."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def require_key(value: str | None) -> str:
    """Return the header's value, or raise a 400 when it is missing or malformed."""
    if value is None or not value.strip():
        raise ApiError(400, "The Idempotency-Key header is required for this request.")
    if not KEY_PATTERN.fullmatch(value):
        raise ApiError(400, "The Idempotency-Key header must be 1 to 255 visible ASCII characters.")
    return value


def run_once(write: Write, request: KeyedRequest, params: dict[str, Any]) -> Outcome:
    """Run ``write`` at most once per key (see the module docstring); replay repeats.

    ``params`` are the work's own parameters.
    """
    params = {
        **params,
        "caller": request.caller,
        "key": request.key,
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
    if row is None:
        raise write.refusal or RuntimeError(f"{request.method} gave no answer")
    if row.answered_here:
        return Outcome(row.response_code, json.loads(row.response_body))
    return _replay(row, request)


def _send(write: Write, params: dict[str, Any]) -> Row | None:
    """Send the phases; committed by the time PostgreSQL answers.

    A request that asks for a test fault point runs the same message in a
    transaction instead, so that the point falls between the work and its
    commit, where a crash must roll everything back.
    """
    if not faults.requested():
        return write.batch.run(db, params)
    row = write.batch.run(db, params, commit=False)
    if row is not None and row.answered_here:
        faults.crash_point("crash-before-commit")
        faults.pause_point("pause-before-commit")
    db.session.commit()
    return row


def _retention() -> timedelta:
    return timedelta(hours=current_app.config["IDEMPOTENCY_KEY_RETENTION_HOURS"])


def _replay(stored: Row, request: KeyedRequest) -> Outcome:
    """Replay a completed key's answer, unless it belongs to another request (422)."""
    if stored.request_fingerprint != request.fingerprint:
        IDEMPOTENCY_CONFLICTS.labels("422").inc()
        raise ApiError(
            422,
            "This Idempotency-Key was already used for a different request; "
            "use a new key for a new request.",
        )
    IDEMPOTENCY_REPLAYS.labels(request.method).inc()
    return Outcome(stored.response_code, json.loads(stored.response_body), replayed=True)


# Keys past the retention, oldest first, a batch per transaction. A key is a row per caller:
# one caller's expired key says nothing about another caller's key of the same value.
REAP_EXPIRED_KEYS = """
DELETE FROM idempotency_keys
WHERE (caller, key) IN (
    SELECT caller, key FROM idempotency_keys
    WHERE created_at < now() - %(retention)s
    ORDER BY created_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
"""


def reap_expired_keys(*, batch_size: int) -> int:
    """Delete keys older than the retention period, ``batch_size`` per transaction; return count.

    Rows locked by a request (taking over an expired key, or replaying a
    live one) are skipped, so the reaper never waits on (or blocks) a
    request, and several replicas running it at once share the work.
    """
    params = {"retention": _retention(), "batch_size": batch_size}
    total = 0
    while True:
        deleted = db.session.connection().exec_driver_sql(REAP_EXPIRED_KEYS, params).rowcount
        db.session.commit()
        total += deleted
        if deleted < batch_size:
            break
    if total:
        log.info("deleted %d expired idempotency keys", total)
    return total

"""Data Collector business logic that the routes call, beside its modules by job.

- :mod:`data_collector.interests`: which airports each user follows;
- :mod:`data_collector.flights`: the flight queries (pages, last, averages);
- :mod:`data_collector.collection`: collection from OpenSky, one cycle at a
  time (:mod:`data_collector.collection.cycle`), run by the worker
  (:mod:`data_collector.worker`).

Here: the user check over gRPC that guards ``POST /interests`` and a user's
flights, asking the worker for a cycle, and the collector's facts for
``/health`` (with the ranges waiting for a retry,
:mod:`data_collector.collection.retries`, and the circuit breaker around OpenSky).
"""

import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from flask import current_app

from common.rpc.peers import PeerError, PendingCall, UserDirectory
from common.timeutil import isoformat_utc
from common.web.errors import ApiError
from data_collector.collection import retries
from data_collector.collection.cycle_requests import request_run
from data_collector.models import CollectorState, db

log = logging.getLogger(__name__)
T = TypeVar("T")


def user_manager() -> UserDirectory:
    """Return this app's gRPC client of the User Manager (one channel per process)."""
    return current_app.extensions["user_manager"]


def require_existing_user(*, directory: UserDirectory, email: str) -> None:
    """Ask the User Manager whether the user exists: 404 if not, 503 if it cannot answer."""
    _require_answer(directory.start_check_user_exists(email, wait_for_ready=True))


def read_for_existing_user(*, directory: UserDirectory, email: str, read: Callable[[], T]) -> T:
    """Return ``read()`` if the User Manager says the user exists, as require_existing_user.

    The check and the read run at the same time, so the request waits for
    the slower of the two rather than for both in turn. The check's answer
    comes first whatever the read did: an unknown user is a 404 and an
    unavailable User Manager a 503 even when the read failed, as when the
    check ran first, and nothing read is returned for a user the User
    Manager does not know.
    """
    pending = directory.start_check_user_exists(email, wait_for_ready=True)
    try:
        result = read()
    except Exception:
        _require_answer(pending)
        raise
    _require_answer(pending)
    return result


def _require_answer(pending: PendingCall) -> None:
    """Raise the 404 or 503 of require_existing_user for a pending CheckUserExists."""
    try:
        exists = pending.reply().exists
    except PeerError as error:
        # Any failure means "cannot check now": never assume the user exists, never a 500.
        log.warning("User Manager cannot answer CheckUserExists (%s)", error.code.name)
        raise ApiError(
            503,
            "The User Manager is unavailable, so the user cannot be checked; try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    if not exists:
        raise ApiError(404, "User not found")


def request_cycle() -> None:
    """Ask the worker for a collection cycle soon (ops; it fetches only what is due).

    At most one a minute: each can spend credits, and the worker collects
    everything due in one cycle anyway. Sooner is a 429 saying when to ask.
    """
    wait = request_run(min_interval=current_app.config["COLLECTION_RUN_MIN_INTERVAL_SECONDS"])
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            f"A collection cycle was asked for or started less than a minute ago; "
            f"ask again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )


def health_facts() -> dict | None:
    """Return the ``opensky`` part of ``/health``: credits, waits, retries, breaker, last cycle."""
    # The retries first: each statement sees the database as it is then, and a cycle that
    # cleared a retry read here has already recorded its start, so the last cycle read
    # next is that one or a later one, never the one before.
    waiting = retries.summary()
    state = db.session.get(CollectorState, 1)
    if state is None:
        return None
    return {
        **state.to_dict(),
        "retries": waiting,
        "circuit_breaker": circuit_breaker_facts(state),
    }


def circuit_breaker_facts(state: CollectorState) -> dict:
    """Return the circuit breaker around OpenSky as the last cycle left it.

    ``trial_after``: while it is open, when the next cycle may make its one
    trial call (the cool-down, ``OPENSKY_BREAKER_COOLDOWN_SECONDS``, after it opened).
    """
    cooldown = timedelta(seconds=current_app.config["OPENSKY_BREAKER_COOLDOWN_SECONDS"])
    opened_at = state.breaker_opened_at
    is_open = state.breaker_state == "open" and opened_at is not None
    return {
        "state": state.breaker_state,
        "failures_in_a_row": state.breaker_failures,
        "opened_at": isoformat_utc(opened_at),
        "trial_after": isoformat_utc(opened_at + cooldown) if is_open else None,
    }

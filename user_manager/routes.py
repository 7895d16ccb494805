"""User Manager REST API: thin views that validate, call services, and shape answers."""

import contextlib

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from common.errors import ApiError, json_object_body
from common.pagination import json_page_response, parse_page_request
from common.validation import EMAIL_MAX_LENGTH, normalize_email, parse_model
from user_manager import idempotency, outbox, services
from user_manager.models import db

bp = Blueprint("users", __name__)

# A page of users is a few KB; 100 per page by default, never more than 1,000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A readiness probe must answer within its own timeout even when PostgreSQL hangs.
HEALTH_STATEMENT_TIMEOUT_MS = 2000
INVALID_CURSOR = "The cursor is invalid; use the URL from the previous page's Link header."


def _path_email(email: str) -> str:
    try:
        return normalize_email(email)
    except ValueError as error:
        raise ApiError(
            400, f"The email in the path is not valid: {error}", details={"email": str(error)}
        ) from None


def _outcome_response(outcome: idempotency.Outcome):
    response = jsonify(outcome.body)
    response.status_code = outcome.status
    if outcome.replayed:
        response.headers[idempotency.REPLAY_HEADER] = "true"
    return response


@bp.get("/ping")
def ping():
    """Answer liveness probes."""
    return {"message": "pong"}


@bp.get("/health")
def health():
    """Report readiness: the database answers; how many calls to the collector are pending."""
    try:
        db.session.execute(text(f"SET LOCAL statement_timeout = {HEALTH_STATEMENT_TIMEOUT_MS}"))
        backlog = outbox.backlog()
        db.session.rollback()
    except SQLAlchemyError as error:
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        current_app.logger.warning("health check: database unavailable: %s", error)
        body = {
            "status": "unavailable",
            "database": "unavailable",
            "error": "The database is unavailable.",
        }
        return body, 503, {"Retry-After": "5"}
    return {
        "status": "ok",
        "database": "ok",
        "outbox_backlog": backlog.count,
        "oldest_pending_seconds": (
            None if backlog.oldest_seconds is None else round(backlog.oldest_seconds, 1)
        ),
    }


@bp.post("/users")
def create_user():
    """Register a new user, at most once per Idempotency-Key."""
    key = idempotency.require_key(request.headers.get("Idempotency-Key"))
    data = parse_model(services.UserCreate, json_object_body())
    return _outcome_response(services.create_user(data=data, key=key))


@bp.get("/users")
def list_users():
    """List users ordered by email, one page at a time."""
    page = parse_page_request(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE, arity=1)
    after = page.after[0] if page.after else None
    if after is not None and not (
        isinstance(after, str) and len(after) <= EMAIL_MAX_LENGTH and after.isprintable()
    ):
        raise ApiError(400, INVALID_CURSOR)
    users = services.list_users(after_email=after, limit=page.limit + 1)
    return json_page_response(
        users, page=page, sort_key_of=lambda row: [row.email], json_of=lambda row: row.item
    )


@bp.get("/users/<path:email>")
def get_user(email: str):
    """Return one user."""
    user = services.get_user(email=_path_email(email))
    if user is None:
        raise ApiError(404, "User not found")
    return user


@bp.delete("/users/<path:email>")
def delete_user(email: str):
    """Delete a user and their interests in the Data Collector, at most once per key."""
    key = idempotency.require_key(request.headers.get("Idempotency-Key"))
    normalized = _path_email(email)
    outcome = idempotency.execute_once(
        key=key,
        method="DELETE",
        path=f"/users/{normalized}",
        body=None,
        user_email=normalized,
        operation=lambda: services.delete_user(email=normalized),
    )
    # Committed: now try the collector ourselves; what fails is the relay's job.
    outbox.deliver(
        message_ids=outcome.outbox_ids, peer=current_app.extensions["data_collector_peer"]
    )
    return _outcome_response(outcome)

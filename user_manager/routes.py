"""User Manager REST API: thin views that validate, call services, and shape answers."""

from flask import Blueprint, current_app, jsonify, request

from common.errors import ApiError, json_object_body
from common.health import readiness
from common.pagination import INVALID_CURSOR_MESSAGE, json_page_response, parse_page_request
from common.validation import EMAIL_MAX_LENGTH, normalize_email, parse_model
from user_manager import idempotency, outbox, services
from user_manager.models import db

bp = Blueprint("users", __name__)

# A page of users is a few KB; 100 per page by default, never more than 1,000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


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
    """Report readiness: the database, the Data Collector, the calls still owed to it."""
    return readiness(
        service="user_manager",
        db=db,
        peer=current_app.extensions["data_collector_peer"],
        peer_service="data_collector",
        facts_key="outbox",
        facts=outbox_facts,
    )


def outbox_facts() -> dict:
    """Return the ``outbox`` part of ``/health``: undelivered calls and the oldest one's age."""
    backlog = outbox.backlog()
    oldest = backlog.oldest_seconds
    return {
        "backlog": backlog.count,
        "oldest_pending_seconds": None if oldest is None else round(oldest, 1),
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
        raise ApiError(400, INVALID_CURSOR_MESSAGE)
    users = services.list_users(after_email=after, limit=page.limit + 1)
    return json_page_response(users, page=page, sort_key_of=lambda row: [row.email])


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

"""User Manager REST API: thin views that validate, call services, and shape answers."""

from flask import Blueprint, jsonify, request

from common.emails import EMAIL_MAX_LENGTH
from common.web.auth import current_caller, require_any_user, require_user, requires
from common.web.errors import ApiError
from common.web.health import add_probes
from common.web.inputs import json_object_body, parse_model, path_email
from common.web.pagination import INVALID_CURSOR_MESSAGE, json_page_response, parse_page_request
from user_manager import idempotency, outbox, services
from user_manager.inputs import UserCreate
from user_manager.models import db

bp = Blueprint("users", __name__)

# A page of users is a few KB; 100 per page by default, never more than 1,000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _outcome_response(outcome: idempotency.Outcome):
    response = jsonify(outcome.body)
    response.status_code = outcome.status
    if outcome.replayed:
        response.headers[idempotency.REPLAY_HEADER] = "true"
    return response


add_probes(
    bp,
    service="user_manager",
    db=db,
    peer=services.data_collector,
    peer_service="data_collector",
    facts_key="outbox",
    facts=outbox.health_facts,
)


@bp.post("/users")
@requires("users:write")
def create_user():
    """Register a new user, at most once per Idempotency-Key."""
    key = idempotency.require_key(request.headers.get("Idempotency-Key"))
    data = parse_model(UserCreate, json_object_body())
    require_user(data.email)
    caller = current_caller()
    return _outcome_response(services.create_user(data=data, key=key, caller=caller))


@bp.get("/users")
@requires("users:read")
def list_users():
    """List users ordered by email, one page at a time."""
    require_any_user()
    page = parse_page_request(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE, arity=1)
    after = page.after[0] if page.after else None
    if after is not None and not (
        isinstance(after, str) and len(after) <= EMAIL_MAX_LENGTH and after.isprintable()
    ):
        raise ApiError(400, INVALID_CURSOR_MESSAGE)
    users = services.list_users(after_email=after, limit=page.limit + 1)
    return json_page_response(users, page=page, sort_key_of=lambda row: [row.email])


@bp.get("/users/<path:email>")
@requires("users:read")
def get_user(email: str):
    """Return one user."""
    email = path_email(email)
    require_user(email)
    user = services.get_user(email=email, with_pii=current_caller().has("users:pii"))
    if user is None:
        raise ApiError(404, "User not found")
    return user


@bp.delete("/users/<path:email>")
@requires("users:write")
def delete_user(email: str):
    """Delete a user and their interests in the Data Collector, at most once per key."""
    key = idempotency.require_key(request.headers.get("Idempotency-Key"))
    email = path_email(email)
    require_user(email)
    caller = current_caller()
    return _outcome_response(services.delete_user(email=email, key=key, caller=caller))

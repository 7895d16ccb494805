"""User Manager REST API: thin views that validate, call services, and shape answers."""

from flask import Blueprint, jsonify, request

from common.emails import EMAIL_MAX_LENGTH
from common.web.auth import current_caller, require_any_user, require_user, requires
from common.web.errors import ApiError
from common.web.inputs import json_object_body, parse_model, path_email
from common.web.openapi import Message, Reply, documented
from common.web.pagination import (
    INVALID_CURSOR_MESSAGE,
    PageLink,
    json_page_response,
    page_query,
    parse_page_request,
)
from user_manager import idempotency, services
from user_manager.answers import ConflictHeaders, ReplayHeader, User, UserCreated
from user_manager.inputs import IdempotencyKeyHeader, UserCreate, UserPath

bp = Blueprint("users", __name__)
TAGS = {"users": "Create, list, read and delete users."}

# A page of users is a few KB; 100 per page by default, never more than 1,000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
KEY_REUSED = "The Idempotency-Key was already used for a different request (method, path or body)."


def _outcome_response(outcome: idempotency.Outcome):
    response = jsonify(outcome.body)
    response.status_code = outcome.status
    if outcome.replayed:
        response.headers[idempotency.REPLAY_HEADER] = "true"
    return response


@bp.post("/users")
@requires("users:write")
@documented(
    tag="users",
    body=UserCreate,
    headers=IdempotencyKeyHeader,
    answers={
        201: Reply(
            "Created. A replay of the same request answers the same, with "
            "`Idempotent-Replayed: true`.",
            UserCreated,
            headers=(ReplayHeader,),
        ),
        400: "Missing or malformed Idempotency-Key, a body that is not a JSON object, or "
        "invalid fields (`details` names each).",
        409: Reply(
            "A user with this email, or this tax code, already exists (replays of this answer "
            "carry `Idempotent-Replayed: true`); or a user with "
            "this email was just deleted and the deletion of their interests is still being "
            "delivered to the Data Collector (with `Retry-After`; not stored against the key).",
            headers=(ConflictHeaders,),
        ),
        422: KEY_REUSED,
    },
)
def create_user():
    """Register a new user, at most once per Idempotency-Key."""
    key = idempotency.require_key(request.headers.get("Idempotency-Key"))
    data = parse_model(UserCreate, json_object_body())
    require_user(data.email)
    caller = current_caller()
    return _outcome_response(services.create_user(data=data, key=key, caller=caller))


@bp.get("/users")
@requires("users:read")
@documented(
    tag="users",
    query=(page_query(default_limit=DEFAULT_PAGE_SIZE, max_limit=MAX_PAGE_SIZE),),
    answers={
        200: Reply("A page of users ordered by email.", list[User], headers=(PageLink,)),
        400: "`limit` out of range, or a cursor that did not come from a Link header.",
    },
)
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
@documented(
    tag="users",
    path=UserPath,
    answers={
        200: Reply("The user.", User),
        400: "The email in the path is not a valid address.",
        404: "No user has this email.",
    },
)
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
@documented(
    tag="users",
    path=UserPath,
    headers=IdempotencyKeyHeader,
    answers={
        200: Reply(
            "Deleted (or the replay of that answer).",
            Message,
            headers=(ReplayHeader,),
            example={"message": "User deleted successfully"},
        ),
        400: "Missing or malformed Idempotency-Key, or an invalid email.",
        404: Reply(
            "No user has this email (replays of this answer carry `Idempotent-Replayed: true`).",
            headers=(ReplayHeader,),
        ),
        422: KEY_REUSED,
    },
)
def delete_user(email: str):
    """Delete a user and their interests in the Data Collector, at most once per key.

    The user's interests in the Data Collector are deleted too: normally before this
    answers; if the collector is down, as soon as it is back.
    """
    key = idempotency.require_key(request.headers.get("Idempotency-Key"))
    email = path_email(email)
    require_user(email)
    caller = current_caller()
    return _outcome_response(services.delete_user(email=email, key=key, caller=caller))

"""The User Manager's OpenAPI document (served at ``/openapi.json``, shown at ``/docs/``).

Built from the code: the request body is ``services.UserCreate``'s JSON
schema, page sizes are the routes' constants, the body limit is the app's
``MAX_CONTENT_LENGTH``. ``tests/unit/test_openapi.py`` checks that every route
is documented and nothing else; the integration suite fuzzes the running
service against this document with schemathesis.
"""

from flask import Flask

from common.emails import EMAIL_MAX_LENGTH
from common.web.openapi import (
    DATE_TIME,
    STRING,
    Document,
    add_operations_for_operators,
    closed_object,
    error,
    json_body,
    nullable,
    page_parameters,
    path_parameter,
    ref,
    response,
    unavailable,
)
from user_manager import routes
from user_manager.idempotency import REPLAY_HEADER
from user_manager.inputs import TAX_CODE_MIN_LENGTH, UserCreate
from user_manager.models import IBAN_MAX_LENGTH, NAME_MAX_LENGTH, TAX_CODE_MAX_LENGTH

DESCRIPTION = """\
Users of the Flight Tracker: create, list, read and delete them.

**At most once.** `POST /users` and `DELETE /users/{email}` need an `Idempotency-Key`
header (any 1-255 visible ASCII characters; a UUID is customary). The first request with a
key does the work; a repeat with the same key and the same request gets the stored answer
again, marked `Idempotent-Replayed: true`, without doing anything twice. The same key with a
different method, path or body is a 422. Invalid requests (400) are not stored, so a
corrected retry may reuse its key. Keys expire after `IDEMPOTENCY_KEY_RETENTION_HOURS`
(default 24).

**Deleting** a user also deletes their interests in the Data Collector (over gRPC); when the
collector is down the call waits in an outbox and is retried until it succeeds.

**Errors** are JSON, `{"error": "...", "details": {...}}`. **Lists** are JSON arrays; the
next page's URL is in the `Link: <...>; rel="next"` header. Every response carries
`X-Request-ID`.
"""

EXAMPLE_USER = {
    "email": "mario.rossi@example.com",
    "first_name": "Mario",
    "last_name": "Rossi",
    "tax_code": "RSSMRA85T10A562S",
    "iban": "IT60X0542811101000000123456",
}


def build_document(app: Flask) -> dict:
    """Return the OpenAPI document of the User Manager app ``app``."""
    doc = Document(
        title="User Manager API",
        description=DESCRIPTION,
        tags=[
            {"name": "users", "description": "Create, list, read and delete users."},
            {"name": "operations", "description": "Probes, metrics and this document."},
        ],
    )
    max_body = app.config["MAX_CONTENT_LENGTH"]
    doc.header(
        REPLAY_HEADER,
        {
            "description": "`true` when this is the stored answer of an earlier request "
            "with the same Idempotency-Key (nothing was done again).",
            "schema": {"type": "string", "enum": ["true"]},
        },
    )
    user = doc.schema(
        "User",
        closed_object(
            {
                "email": {**STRING, "description": "Lower-cased; the user's id."},
                "first_name": STRING,
                "last_name": STRING,
                "tax_code": {**nullable(STRING), "description": "Upper-case letters and digits."},
                "iban": {**nullable(STRING), "description": "Compact, upper-case."},
                "created_at": DATE_TIME,
            },
            example={**EXAMPLE_USER, "created_at": "2026-01-31T12:00:00Z"},
        ),
    )
    user_create = doc.model(
        UserCreate,
        email={
            "description": f"Any deliverable-looking address, at most {EMAIL_MAX_LENGTH} "
            "characters; stored lower-cased (emails are case-insensitive here).",
        },
        first_name={"description": f"1-{NAME_MAX_LENGTH} characters, not blank."},
        last_name={"description": f"1-{NAME_MAX_LENGTH} characters, not blank."},
        tax_code={
            "description": f"Optional; {TAX_CODE_MIN_LENGTH}-{TAX_CODE_MAX_LENGTH} letters "
            "and digits (spaces . - / allowed between groups); unique among users.",
        },
        iban={
            "description": f"Optional; a valid IBAN (country, length, format and check "
            f"digits), at most {IBAN_MAX_LENGTH} characters without spaces.",
        },
    )
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": "Makes the request at-most-once: a unique value per intended "
        "operation (a UUID), sent again unchanged on a retry.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        "example": "3f9d2e1b-8c4a-4d6f-b1e2-5a7f8c2d9e4a",
    }
    email = path_parameter(
        "email",
        "The user's email (any case).",
        {"type": "string", "minLength": 1},
        "mario.rossi@example.com",
    )
    key_reused = error(
        "The Idempotency-Key was already used for a different request (method, path or body)."
    )
    key_expired = error("The Idempotency-Key expired while this request ran; retry it.")
    created_conflict = error(
        "A user with this email, or this tax code, already exists (replays of this answer "
        "carry `Idempotent-Replayed: true`); or the key expired meanwhile; or a user with "
        "this email was just deleted and the deletion of their interests is still being "
        "delivered to the Data Collector (with `Retry-After`; not stored against the key).",
        headers=(REPLAY_HEADER,),
    )
    created_conflict["headers"]["Retry-After"] = {
        "description": "Only while an earlier user with this email is still being deleted: "
        "seconds to wait before retrying.",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }

    doc.operation(
        "POST",
        "/users",
        summary="Create a user (at most once per Idempotency-Key)",
        tag="users",
        parameters=[idempotency_key],
        body=json_body(user_create, EXAMPLE_USER),
        responses={
            201: response(
                "Created. A replay of the same request answers the same, with "
                "`Idempotent-Replayed: true`.",
                doc.schema("UserCreated", closed_object({"message": STRING, "user": user})),
                headers=(REPLAY_HEADER,),
            ),
            400: error(
                "Missing or malformed Idempotency-Key, a body that is not a JSON object, or "
                "invalid fields (`details` names each)."
            ),
            409: created_conflict,
            413: error(f"The body is larger than {max_body} bytes."),
            415: error("The body is not declared as JSON (`Content-Type: application/json`)."),
            422: key_reused,
            503: unavailable(),
        },
    )
    doc.operation(
        "GET",
        "/users",
        summary="List users by email, one page at a time",
        tag="users",
        parameters=page_parameters(
            default_limit=routes.DEFAULT_PAGE_SIZE, max_limit=routes.MAX_PAGE_SIZE
        ),
        responses={
            200: response(
                "A page of users ordered by email.",
                {"type": "array", "items": user},
                headers=("Link",),
            ),
            400: error("`limit` out of range, or a cursor that did not come from a Link header."),
            503: unavailable(),
        },
    )
    doc.operation(
        "GET",
        "/users/{email}",
        summary="Read one user",
        tag="users",
        parameters=[email],
        responses={
            200: response("The user.", user),
            400: error("The email in the path is not a valid address."),
            404: error("No user has this email."),
            503: unavailable(),
        },
    )
    doc.operation(
        "DELETE",
        "/users/{email}",
        summary="Delete a user and their interests (at most once per Idempotency-Key)",
        tag="users",
        description="The user's interests in the Data Collector are deleted too: normally "
        "before this answers; if the collector is down, as soon as it is back.",
        parameters=[email, idempotency_key],
        responses={
            200: response(
                "Deleted (or the replay of that answer).",
                ref("schemas", "Message"),
                headers=(REPLAY_HEADER,),
                example={"message": "User deleted successfully"},
            ),
            400: error("Missing or malformed Idempotency-Key, or an invalid email."),
            404: error(
                "No user has this email (replays of this answer carry "
                "`Idempotent-Replayed: true`).",
                headers=(REPLAY_HEADER,),
            ),
            409: key_expired,
            422: key_reused,
            503: unavailable(),
        },
    )
    add_operations_for_operators(
        doc,
        service="user_manager",
        facts_key="outbox",
        facts_schema=closed_object(
            {
                "backlog": {"type": "integer", "minimum": 0},
                "oldest_pending_seconds": {"type": ["number", "null"], "minimum": 0},
            },
            description="Calls to the Data Collector committed but not yet delivered.",
        ),
    )
    return doc.spec

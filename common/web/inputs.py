"""Reading a request, shared by the services: every refusal is a 4xx saying what to fix.

Bodies are parsed into pydantic models that forbid unknown fields and refuse
JSON values of the wrong type; every failure becomes one 400 whose
``details`` name each offending field. Query and path parameters have small
readers here that raise the same kind of 400.
"""

from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest

from common.emails import normalize_email
from common.web.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)
# The bodies of these APIs are flat objects; this much nesting leaves room for a client's
# habits and stops a body of nested brackets long before it could exhaust the parser's
# recursion (a RecursionError used to escape as a 500).
MAX_JSON_DEPTH = 16


def json_object_body() -> dict[str, Any]:
    """Return the request's JSON object, or raise the 4xx a client can act on.

    415 when the body is not declared as JSON, 400 when it does not parse or
    is not an object. (413 for oversized bodies comes earlier, from
    ``MAX_CONTENT_LENGTH``.)
    """
    if not request.is_json:
        raise ApiError(415, "The request body must be JSON (Content-Type: application/json).")
    if json_depth(request.get_data()) > MAX_JSON_DEPTH:
        raise ApiError(400, f"The request body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        body = request.get_json()
    except BadRequest:
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def json_depth(text: bytes) -> int:
    """Return how deeply a JSON text nests arrays and objects (brackets in strings ignored).

    A scan, not a parse: it never recurses, whatever the input.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_model(model: type[Model], data: Any) -> Model:
    """Validate ``data`` against ``model``; raise a 400 naming every invalid field."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        details: dict[str, str] = {}
        for problem in error.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in problem["loc"]) or "body"
            message = problem["msg"]
            if problem["type"] == "extra_forbidden":
                message = "unknown field"
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            details.setdefault(field, message)
        fields = ", ".join(sorted(details))
        raise ApiError(400, f"Invalid request: check {fields}.", details=details) from None


def path_email(value: str, *, where: str = "the path") -> str:
    """Normalize an email taken from the URL (its path, or ``where``), or raise a 400 saying why."""
    try:
        return normalize_email(value)
    except ValueError as error:
        raise ApiError(
            400, f"The email in {where} is not valid: {error}", details={"email": str(error)}
        ) from None


def whole_number(name: str, raw: str, *, minimum: int, maximum: int) -> int:
    """Read a query parameter that must be a whole number in [minimum, maximum], or raise a 400.

    ``isascii``: ``str.isdigit`` also accepts digits ``int`` refuses, such as
    "²"; the length bound keeps ``int`` away from its 4,300-digit limit.
    """
    if raw.isascii() and raw.isdigit() and len(raw) <= 9 and minimum <= int(raw) <= maximum:
        return int(raw)
    raise ApiError(
        400, f"{name} must be a whole number from {minimum} to {maximum}.", details={name: raw}
    )

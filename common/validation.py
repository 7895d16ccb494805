"""Request validation shared by both services: one error format, one email rule.

Bodies are parsed into pydantic models that forbid unknown fields and refuse
JSON values of the wrong type; every failure becomes one 400 whose
``details`` name each offending field.
"""

from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ValidationError

from common.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

EMAIL_MAX_LENGTH = 254


def normalize_email(value: str) -> str:
    """Return the canonical form of an email address, or raise ``ValueError`` saying why.

    Syntax is checked by email-validator (no DNS lookups: a request must not
    wait on the network). The whole address is lower-cased, so
    ``Mario.Rossi@X.com`` and ``mario.rossi@x.com`` are one user.
    """
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    normalized = result.normalized.lower()
    if len(normalized) > EMAIL_MAX_LENGTH:
        # Normalization can lengthen an address (NFC, lower-casing some letters).
        raise ValueError(f"must be at most {EMAIL_MAX_LENGTH} characters")
    return normalized


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
